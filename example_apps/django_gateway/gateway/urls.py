from django.urls import path

from . import views

urlpatterns = [
    path("v1/chat/completions", views.chat_completions),
    path("v1/embeddings", views.embeddings),
    path("v1/responses", views.responses),
]
