"""Client registration over HTTP: RFC 7591 (``POST /register``) and RFC 7592 (``GET``, ``PUT``,
``DELETE /register/{client_id}``)."""
