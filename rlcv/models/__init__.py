"""Small backbones and heads shared by several methods."""
