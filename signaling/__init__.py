"""The regional signaling hub and the wire protocol (grows in later issues)."""
