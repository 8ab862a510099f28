//! Inventory: namespaces, attributes, VCNs and endpoints (YAML).
