"""The image side: rendering contexts as pictures, frozen encoders, image prompts and noise, encoder pretraining."""
