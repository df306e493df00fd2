"""The dataset as trainers receive it: token counts, training columns, the dataset card, the HF layout."""
