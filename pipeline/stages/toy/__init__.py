"""`pipeline toy`: the GAN paper's 1-D Gaussian and the 8-Gaussian ring (stage.py: the command;
run.py: one run; problems.py, figures.py). Imports nothing: a command imports what it uses.
"""
