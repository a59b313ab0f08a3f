-- Database per service (ARCHITECTURE.md). Runs once, when the postgres volume is first initialised;
-- after editing, recreate it with `docker compose down -v`.
CREATE DATABASE members;
CREATE DATABASE content;
CREATE DATABASE campaigns;
CREATE DATABASE rewards;
CREATE DATABASE analytics;
CREATE DATABASE webhooks;
CREATE DATABASE gateway;
