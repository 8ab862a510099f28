//! Policy + inventory -> Plan, the reference evaluator, and explain.
