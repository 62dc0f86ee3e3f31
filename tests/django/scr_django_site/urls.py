from django.urls import path

from . import views

urlpatterns = [
    path("v1/chat/completions", views.chat),
    path("v1/async/chat/completions", views.achat),
    path("v1/exempt/chat/completions", views.exempt_chat),
    path("v1/agent/chat/completions", views.AgentView.as_view()),
    path("healthz", views.healthz),
    path("_scr/failures", views.failures),
]
