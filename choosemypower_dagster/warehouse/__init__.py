"""The warehouse: schema, connection handling and the reads and writes the assets make."""
