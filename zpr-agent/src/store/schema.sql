-- The zpr store (see store/mod.rs). Lists are JSON arrays in TEXT columns;
-- times are Unix seconds. Names compare case-insensitively where the
-- policy language does (namespaces, attribute keys).
PRAGMA foreign_keys = ON;
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS policy (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    statements TEXT NOT NULL,
    time_created INTEGER NOT NULL,
    time_updated INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS namespace (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '',
    is_retired INTEGER NOT NULL DEFAULT 0,
    time_created INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS attribute (
    id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES namespace (id) ON DELETE CASCADE,
    name TEXT NOT NULL COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '',
    -- NULL: freeform; else the JSON list of allowed values.
    allowed_values TEXT,
    time_created INTEGER NOT NULL,
    UNIQUE (namespace_id, name)
);

CREATE TABLE IF NOT EXISTS vcn (
    name TEXT PRIMARY KEY,
    cidrs TEXT NOT NULL,
    security_attribute TEXT
);

CREATE TABLE IF NOT EXISTS endpoint (
    name TEXT PRIMARY KEY,
    vcn TEXT NOT NULL,
    addresses TEXT NOT NULL,
    interface TEXT,
    mode TEXT NOT NULL DEFAULT 'enforce'
);

CREATE TABLE IF NOT EXISTS endpoint_attribute (
    endpoint TEXT NOT NULL REFERENCES endpoint (name) ON DELETE CASCADE,
    -- As written: namespace.key:value.
    attribute TEXT NOT NULL,
    namespace TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (endpoint, attribute)
);

CREATE TABLE IF NOT EXISTS work_request (
    id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    -- The security-attribute namespace the request concerned, if any.
    namespace TEXT,
    resource TEXT NOT NULL,
    status TEXT NOT NULL,
    principal TEXT NOT NULL,
    generation INTEGER,
    errors TEXT NOT NULL,
    logs TEXT NOT NULL,
    time_accepted INTEGER NOT NULL,
    time_finished INTEGER NOT NULL
);
