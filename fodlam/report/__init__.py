"""Output formats: text tables now; HTML and plots build on Profile."""
