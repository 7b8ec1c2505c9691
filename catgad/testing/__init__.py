"""Running a config's own scenario tests (`catgad test`)."""
