-- Shopmail platform kit: OpenCart 3.0.x (MariaDB/MySQL) -> the Shopmail shop data contract.
-- Table names use OpenCart's default prefix `oc_`; with another DB_PREFIX replace it first:
--   sed 's/\boc_/myprefix_/g' views.sql | mysql shop
-- Collation: OpenCart 3 creates utf8mb4_unicode_ci tables; the kit's own table and functions declare the
-- same (MariaDB refuses to compare two collations), so replace it if your tables use another.
-- Run as a user allowed to create views and functions (with binary logging on, MariaDB also needs
-- log_bin_trust_function_creators=1 or SUPER). Re-running replaces everything; the config rows you
-- changed are kept (INSERT IGNORE).

-- String literals in the views take the connection's collation: make it OpenCart's.
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS shopmail_kit_config (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  value VARCHAR(255) NOT NULL DEFAULT '',
  meaning VARCHAR(255) NOT NULL DEFAULT ''
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO shopmail_kit_config (name, value, meaning) VALUES
  ('store_url', 'https://shop.example/', 'HTTPS_SERVER of the storefront, with the trailing slash'),
  ('language_id', '1', 'oc_language.language_id of product and category names'),
  ('utc_offset_minutes', '0', 'offset of config_timezone (OpenCart writes local times); 0 for UTC'),
  ('overstock_quantity', '100', 'oc_product.quantity from which a product counts as overstock'),
  ('birthday_custom_field_id', '', 'oc_custom_field id of a date field holding the birthday (empty: none)'),
  ('gender_custom_field_id', '', 'oc_custom_field id of a select/radio field for gender (empty: none)'),
  ('gender_female_value', '', 'its stored value (custom_field_value_id) meaning female'),
  ('gender_male_value', '', 'its stored value (custom_field_value_id) meaning male'),
  ('consent_custom_field_id', '', 'checkbox custom field for marketing consent (empty: oc_customer.newsletter)'),
  ('status_1', 'received', 'Pending'),
  ('status_2', 'paid', 'Processing'),
  ('status_15', 'accepted', 'Processed'),
  ('status_3', 'shipped', 'Shipped'),
  ('status_5', 'delivered', 'Complete'),
  ('status_7', 'cancelled', 'Canceled'),
  ('status_8', 'cancelled', 'Denied'),
  ('status_10', '', 'Failed: no contract status'),
  ('status_11', '', 'Refunded: no contract status'),
  ('status_12', '', 'Reversed: no contract status'),
  ('status_13', '', 'Chargeback: no contract status'),
  ('status_9', '', 'Canceled Reversal: no contract status'),
  ('status_14', 'cancelled', 'Expired'),
  ('status_16', 'cancelled', 'Voided');

DROP FUNCTION IF EXISTS shopmail_cfg;
DROP FUNCTION IF EXISTS shopmail_utc;
DROP FUNCTION IF EXISTS shopmail_local;
DROP FUNCTION IF EXISTS shopmail_html_decode;
DROP FUNCTION IF EXISTS shopmail_oc_status;
DROP FUNCTION IF EXISTS shopmail_oc_custom;
DROP FUNCTION IF EXISTS shopmail_truthy;

DELIMITER $$
CREATE FUNCTION shopmail_cfg(setting VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  RETURN (SELECT NULLIF(value, '') FROM shopmail_kit_config WHERE name = setting);
END$$

-- Local shop time -> naive UTC with a fixed numeric offset: no CONVERT_TZ, no named zones (a server
-- without time-zone tables returns NULL for them).
CREATE FUNCTION shopmail_utc(t DATETIME) RETURNS DATETIME
  READS SQL DATA
BEGIN
  RETURN t - INTERVAL CAST(COALESCE(shopmail_cfg('utc_offset_minutes'), '0') AS SIGNED) MINUTE;
END$$

CREATE FUNCTION shopmail_local(t DATETIME) RETURNS DATETIME
  READS SQL DATA
BEGIN
  RETURN t + INTERVAL CAST(COALESCE(shopmail_cfg('utc_offset_minutes'), '0') AS SIGNED) MINUTE;
END$$

-- OpenCart stores every request value through htmlspecialchars: O&#039;Brien, &quot;Best&quot;.
-- &amp; last, so '&amp;quot;' stays '&quot;' (decoded once, as PHP would).
CREATE FUNCTION shopmail_html_decode(s TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  DETERMINISTIC NO SQL
BEGIN
  RETURN REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(
    s, '&quot;', '"'), '&#039;', ''''), '&#39;', ''''), '&apos;', ''''), '&lt;', '<'), '&gt;', '>'),
    '&amp;', '&');
END$$

CREATE FUNCTION shopmail_oc_status(status_id INT) RETURNS VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  RETURN shopmail_cfg(CONCAT('status_', status_id));
END$$

-- One value of oc_customer.custom_field (JSON {"<custom_field_id>": value}) named by a config row.
CREATE FUNCTION shopmail_oc_custom(fields TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci, setting VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  DECLARE field_id VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci DEFAULT shopmail_cfg(setting);
  IF field_id IS NULL OR fields IS NULL OR fields = '' OR NOT JSON_VALID(fields) THEN
    RETURN NULL;
  END IF;
  RETURN NULLIF(JSON_VALUE(fields, CONCAT('$."', field_id, '"')), '');
END$$

-- A checkbox/consent value: 1 for 1/true/yes/on (any case), else 0.
CREATE FUNCTION shopmail_truthy(v VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS TINYINT
  DETERMINISTIC NO SQL
BEGIN
  RETURN COALESCE(LOWER(TRIM(v)) IN ('1', 'true', 'yes', 'on'), 0);
END$$
DELIMITER ;

-- Registered customers, then guests: one pseudo-customer per guest order (id = -order_id), never
-- marketing consent, so guests get service mails about their order only.
CREATE OR REPLACE VIEW customers AS
SELECT
  c.customer_id AS id,
  TRIM(c.email) AS email,
  shopmail_html_decode(c.firstname) AS first_name,
  shopmail_html_decode(c.lastname) AS last_name,
  CASE shopmail_oc_custom(c.custom_field, 'gender_custom_field_id')
    WHEN shopmail_cfg('gender_female_value') THEN 'f'
    WHEN shopmail_cfg('gender_male_value') THEN 'm'
  END AS gender,
  CAST(shopmail_oc_custom(c.custom_field, 'birthday_custom_field_id') AS DATE) AS birth_date,
  shopmail_html_decode(NULLIF(a.city, '')) AS city,
  shopmail_utc(c.date_added) AS registered_at,
  CASE
    WHEN shopmail_cfg('consent_custom_field_id') IS NULL THEN c.newsletter = 1
    ELSE shopmail_truthy(shopmail_oc_custom(c.custom_field, 'consent_custom_field_id'))
  END AS marketing_consent,
  CAST(NULL AS CHAR(32)) AS discount_card,
  LOWER(LEFT(l.code, 2)) AS language
FROM oc_customer c
LEFT JOIN oc_address a ON a.address_id = c.address_id
LEFT JOIN oc_language l ON l.language_id = c.language_id
UNION ALL
SELECT
  -o.order_id,
  TRIM(o.email),
  shopmail_html_decode(o.firstname),
  shopmail_html_decode(o.lastname),
  NULL,
  NULL,
  shopmail_html_decode(NULLIF(o.payment_city, '')),
  shopmail_utc(o.date_added),
  0,
  NULL,
  LOWER(LEFT(l.code, 2))
FROM oc_order o
LEFT JOIN oc_language l ON l.language_id = o.language_id
WHERE o.customer_id = 0 AND o.order_status_id > 0;

-- order_status_id 0 = a checkout never confirmed ("missing order"): not an order.
-- Amounts in the order's currency (OpenCart keeps the default currency and the rate).
CREATE OR REPLACE VIEW orders AS
SELECT
  o.order_id AS id,
  IF(o.customer_id = 0, -o.order_id, o.customer_id) AS customer_id,
  COALESCE(
    shopmail_oc_status(o.order_status_id),
    (SELECT shopmail_oc_status(h.order_status_id) FROM oc_order_history h
     WHERE h.order_id = o.order_id AND shopmail_oc_status(h.order_status_id) IS NOT NULL
     ORDER BY h.date_added DESC, h.order_history_id DESC LIMIT 1),
    'received'
  ) AS status,
  shopmail_utc(o.date_added) AS created_at,
  ROUND(o.total * o.currency_value, 2) AS total,
  o.currency_code AS currency,
  CAST(NULL AS CHAR(64)) AS tracking_number
FROM oc_order o
WHERE o.order_status_id > 0;

-- First time each contract status was reached (oc_order_history), plus `received` at order time.
CREATE OR REPLACE VIEW order_status_history AS
SELECT order_id, status, MIN(changed_at) AS changed_at
FROM (
  SELECT h.order_id, shopmail_oc_status(h.order_status_id) AS status, shopmail_utc(h.date_added) AS changed_at
  FROM oc_order_history h
  JOIN oc_order o ON o.order_id = h.order_id AND o.order_status_id > 0
  UNION ALL
  SELECT o.order_id, 'received', shopmail_utc(o.date_added)
  FROM oc_order o
  WHERE o.order_status_id > 0
) steps
WHERE status IS NOT NULL
GROUP BY order_id, status;

CREATE OR REPLACE VIEW order_items AS
SELECT
  op.order_id,
  op.product_id,
  SUM(op.quantity) AS qty,
  ROUND(SUM(op.price * op.quantity) / NULLIF(SUM(op.quantity), 0) * MAX(o.currency_value), 2) AS price
FROM oc_order_product op
JOIN oc_order o ON o.order_id = op.order_id AND o.order_status_id > 0
GROUP BY op.order_id, op.product_id;

-- Prices without tax and specials (oc_product.price, default currency). Disabled products stay (old
-- orders refer to them) but are never in stock.
CREATE OR REPLACE VIEW products AS
SELECT
  p.product_id AS id,
  shopmail_html_decode(COALESCE(NULLIF(pd.name, ''), p.model)) AS name,
  shopmail_html_decode(m.name) AS brand,
  (SELECT shopmail_html_decode(cd.name)
   FROM oc_product_to_category pc
   JOIN oc_category_description cd
     ON cd.category_id = pc.category_id AND cd.language_id = shopmail_cfg('language_id')
   WHERE pc.product_id = p.product_id
   ORDER BY pc.category_id LIMIT 1) AS category,
  ROUND(p.price, 2) AS price,
  CONCAT(shopmail_cfg('store_url'), 'index.php?route=product/product&product_id=', p.product_id) AS url,
  IF(p.image IS NULL OR p.image = '', NULL, CONCAT(shopmail_cfg('store_url'), 'image/', p.image)) AS image_url,
  (p.status = 1 AND p.quantity > 0) AS in_stock,
  (p.quantity >= CAST(COALESCE(shopmail_cfg('overstock_quantity'), '100') AS SIGNED)) AS overstock,
  shopmail_utc(p.date_added) AS created_at
FROM oc_product p
LEFT JOIN oc_product_description pd
  ON pd.product_id = p.product_id AND pd.language_id = shopmail_cfg('language_id')
LEFT JOIN oc_manufacturer m ON m.manufacturer_id = p.manufacturer_id;

-- oc_cart rows of logged-in customers (storefront only, api_id 0): one cart per customer, updated when
-- a product was last added. Guest carts live in a session only: not mailable.
CREATE OR REPLACE VIEW carts AS
SELECT c.customer_id AS id, c.customer_id AS customer_id, shopmail_utc(MAX(c.date_added)) AS updated_at
FROM oc_cart c
WHERE c.customer_id > 0 AND c.api_id = 0
GROUP BY c.customer_id;

CREATE OR REPLACE VIEW cart_items AS
SELECT c.customer_id AS cart_id, c.product_id, SUM(c.quantity) AS qty
FROM oc_cart c
WHERE c.customer_id > 0 AND c.api_id = 0
GROUP BY c.customer_id, c.product_id;

-- OpenCart has no password-reset log Shopmail could mail from (its own mail sends the link).
CREATE OR REPLACE VIEW password_resets AS
SELECT
  CAST(0 AS SIGNED) AS id,
  CAST(0 AS SIGNED) AS customer_id,
  CAST(NULL AS DATETIME) AS requested_at,
  CAST('' AS CHAR(1000)) AS reset_url,
  CAST(NULL AS DATETIME) AS expires_at
FROM DUAL WHERE 1 = 0;
