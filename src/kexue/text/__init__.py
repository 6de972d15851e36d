"""Text systems: word vectors (`kexue.text.wordvec`); segmentation, titles and poetry come later."""
