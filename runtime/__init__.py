"""Model runtime: backends per format, the model repository, codecs and the HTTP app.

Importing this package is cheap: no ML framework is imported until a backend loads a model.
"""
