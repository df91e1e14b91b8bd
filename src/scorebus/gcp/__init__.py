"""Google Cloud runtime: Cloud Functions entry point and the Pub/Sub push endpoint."""
