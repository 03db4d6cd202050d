"""The command-line face: Typer app, one module per command group."""
