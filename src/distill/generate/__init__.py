"""Teacher generation."""
