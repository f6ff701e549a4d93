"""The site export: the JSON payloads the site reads and their atomic publishing."""
