-- Accounts that exist for development mode only (the demo tenant's `demo` /
-- `demo-password`): a console started outside development mode removes them, so a
-- known password never outlives the mode that made it. The demo account created
-- before this column existed is recognised by the display name development mode gives it.
ALTER TABLE console.accounts ADD COLUMN dev_mode_only boolean NOT NULL DEFAULT false;
UPDATE console.accounts SET dev_mode_only = true
 WHERE tenant = 'demo' AND username = 'demo' AND display_name = 'Quản trị viên demo';
