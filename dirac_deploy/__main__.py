"""`python -m dirac_deploy` runs the command line."""

from .cli import main

main(prog_name="dirac-deploy")
