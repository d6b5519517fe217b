"""One module (or package) per dvc.yaml stage, each the library function its `pipeline`
command calls. Imports nothing: a command imports only its own stage."""
