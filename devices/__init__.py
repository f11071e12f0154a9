"""Hardware for the kiosk: ID card reader, document camera, face camera; usable without a kiosk."""
