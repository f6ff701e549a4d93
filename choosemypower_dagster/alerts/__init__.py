"""Where failed-run alerts go: a webhook when configured, the log otherwise."""
