"""People: faces grouped into persons (clustering), named and reviewed by the user."""
