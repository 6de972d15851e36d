"""Text systems: word vectors (`wordvec`), segmentation (`segment`), the poet (`poetry`), titles."""
