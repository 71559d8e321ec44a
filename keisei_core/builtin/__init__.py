"""Built-in functionality, written as ordinary plugins (dogfooding)."""
