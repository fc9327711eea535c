-- The tables of the data contract (../shared/specs/data-contract.md), as the demo
-- generator writes them. Users bring their own file with at least these columns.
CREATE TABLE intercom__company_enhanced (
    company_id TEXT PRIMARY KEY,
    company_name TEXT,
    created_at TEXT,
    all_company_tags TEXT,
    monthly_spend REAL,
    user_count INTEGER,
    session_count INTEGER,
    plan_name TEXT,
    industry TEXT
);
CREATE TABLE intercom__company_metrics (
    company_id TEXT PRIMARY KEY,
    company_name TEXT,
    created_at TEXT,
    all_company_tags TEXT,
    monthly_spend REAL,
    user_count INTEGER,
    session_count INTEGER,
    plan_name TEXT,
    industry TEXT,
    total_conversations_closed INTEGER,
    average_conversation_rating REAL,
    median_time_to_first_response_time_minutes REAL,
    registration_retention_7d REAL,
    registration_retention_30d REAL
);
CREATE TABLE intercom__contact_enhanced (
    contact_id TEXT PRIMARY KEY,
    contact_name TEXT,
    contact_email TEXT,
    created_at TEXT,
    signed_up_at TEXT,
    all_contact_company_names TEXT,
    last_activity_ts TEXT,
    all_contact_tags TEXT
);
CREATE TABLE intercom__conversation_enhanced (
    conversation_id TEXT PRIMARY KEY,
    conversation_created_at TEXT,
    conversation_last_updated_at TEXT,
    conversation_type TEXT,
    conversation_initiated_type TEXT,
    conversation_author_type TEXT,
    conversation_assignee_type TEXT,
    conversation_state TEXT,
    conversation_subject TEXT,
    all_conversation_tags TEXT,
    all_conversation_contacts TEXT,
    all_contact_company_names TEXT,
    first_close_at TEXT,
    last_close_at TEXT,
    conversation_rating INTEGER,
    first_team_name TEXT,
    last_team_name TEXT
);
CREATE TABLE intercom__conversation_metrics (
    conversation_id TEXT PRIMARY KEY,
    first_admin_response_at TEXT,
    time_to_first_response_minutes REAL,
    time_to_last_close_minutes REAL,
    count_reopens INTEGER,
    count_total_parts INTEGER,
    count_assignments INTEGER
);
CREATE TABLE usage_events (
    event_id TEXT PRIMARY KEY,
    contact_id TEXT,
    company_id TEXT,
    event_name TEXT,
    is_core INTEGER,
    occurred_at TEXT
);
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    portfolio_size INTEGER,
    plan_type TEXT,
    annual_revenue REAL,
    is_active INTEGER,
    nps_score INTEGER,
    support_tickets_last_90d INTEGER,
    signup_date TEXT
);
CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    user_id TEXT,
    event_type TEXT,
    event_time TEXT
);
