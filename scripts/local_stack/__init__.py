"""The application running on this machine: see scripts/local-stack and stack.py."""
