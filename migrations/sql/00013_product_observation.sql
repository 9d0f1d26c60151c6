-- Products named by the line itself: a product sample (role 4) says which product
-- an equipment makes from its time on, until the next one ('' for none: a
-- changeover). The aggregator derives production runs from these where no run was
-- entered through the API.

-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE c text;
BEGIN
    SELECT conname INTO c FROM pg_constraint
    WHERE conrelid = 'samples'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%role%';
    IF c IS NOT NULL THEN
        EXECUTE format('ALTER TABLE samples DROP CONSTRAINT %I', c);
    END IF;
END
$$;
-- +goose StatementEnd
ALTER TABLE samples ADD CONSTRAINT samples_role_check CHECK (role BETWEEN 1 AND 4);

CREATE TABLE product_observation (
    tenant_id text NOT NULL,
    equipment text NOT NULL,
    ts        timestamptz NOT NULL,
    product   text NOT NULL CHECK (product = '' OR product ~ '^[A-Za-z0-9._-]{1,64}$'),
    PRIMARY KEY (tenant_id, equipment, ts)
);
ALTER TABLE product_observation ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON product_observation USING (tenant_id = takt_tenant()) WITH CHECK (tenant_id = takt_tenant());
GRANT SELECT ON product_observation TO takt_app;

-- +goose Down
DROP TABLE product_observation;
DELETE FROM samples WHERE role = 4;
ALTER TABLE samples DROP CONSTRAINT samples_role_check;
ALTER TABLE samples ADD CONSTRAINT samples_role_check CHECK (role BETWEEN 1 AND 3);
