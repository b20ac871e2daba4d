"""The bundled offline demo: a generated news portal served on localhost."""
