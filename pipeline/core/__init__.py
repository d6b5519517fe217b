"""What a model is: nets, losses, the feature maths, algorithms and variants (torch only,
no files, no params). Imports nothing: each module is imported where it is used."""
