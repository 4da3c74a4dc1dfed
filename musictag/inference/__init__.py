"""Using a trained model: tagging files and folders, the recommendation catalogue and index, and the
t-SNE map of predicted tags."""
