"""Who is calling: gateway keys, teams, and the Principal the rest of the path sees."""
