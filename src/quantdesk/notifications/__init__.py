"""The notifications domain: in-app, email, webhooks and a live stream, raised by `notify`."""
