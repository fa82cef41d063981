"""The experiments: recipes and their arms, regimes, image-stage recipes, vocabulary expansion and the headline table."""
