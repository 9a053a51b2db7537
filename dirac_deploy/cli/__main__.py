from . import main

main(prog_name="dirac-deploy")
