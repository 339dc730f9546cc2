"""Loading the model under attack: every --model form, its weights, normalisation and guard."""
