"""inrkit's built-in sharing-strategy plugins, each registered through its own entry point."""
