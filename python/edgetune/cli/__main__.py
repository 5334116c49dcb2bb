from edgetune.cli import app

app()
