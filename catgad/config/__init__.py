"""The config core: YAML read with positions (includes, `${VAR}`), the reporter, CEL compiled,
JSON Schema fragments and their error messages, and the Section every feature and backend
describes its part of the config with. It imports nothing of catgad above catgad.errors;
catgad.app gathers the sections."""
