"""Loading data: every --data form, as a DataSource of (x, y) batches."""
