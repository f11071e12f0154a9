"""The citizen's session on the township kiosk (grows in later issues)."""
