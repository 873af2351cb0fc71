"""Stand-alone helper tools run with `python -m anoncli.tools.<name>`."""
