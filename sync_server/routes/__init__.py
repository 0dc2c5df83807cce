"""HTTP route handlers, one module per area; `sync_server.app.create_app` assembles them."""
