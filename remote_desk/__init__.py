"""The clerk's desk server at a county service centre (grows in later issues)."""
