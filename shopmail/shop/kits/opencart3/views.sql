-- Shopmail platform kit: OpenCart 3.0.x (MariaDB/MySQL) -> the Shopmail shop data contract.
-- Table names use OpenCart's default prefix `oc_`; with another DB_PREFIX replace it first:
--   sed 's/\boc_/myprefix_/g' views.sql | mysql shop
-- Works under the server's default strict sql_mode (zero dates included) and with any utf8mb4/utf8
-- collation of the shop's tables and of the connection (see "Collations" below); nothing to replace.
-- Run as a user allowed to create views and functions (with binary logging on, MariaDB also needs
-- log_bin_trust_function_creators=1 or SUPER). Re-running replaces everything; the config rows you
-- changed are kept (INSERT IGNORE).
--
-- Collations. MariaDB and MySQL refuse to compare two strings of different collations unless one side
-- may be converted ("Illegal mix of collations", error 1267), and both a stored function's result and a
-- literal may be converted only if the other side may not. So: the kit's own objects (config table,
-- function parameters and results, the literals below) are all utf8mb4_unicode_ci; a kit value is
-- compared with an OpenCart column only as a function result or a literal (the column's collation
-- wins) or with an explicit `COLLATE utf8mb4_bin`; and every text column a view returns is
-- CONVERT(... USING utf8mb4), which Shopmail's queries (in the connection's collation, whatever it is)
-- may compare with.
-- Zero dates. OpenCart's date columns may hold '0000-00-00 00:00:00'; a stored function taking a DATETIME
-- raises error 1292 on it in strict mode, so times are converted inline (`shopmail_offset()` minutes)
-- and zero dates pass through unchanged (Shopmail reads them as NULL and reports them).

-- String literals in the views and functions take the connection's collation: make it the kit's.
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
  ('kit', 'opencart3', 'the installed Shopmail kit (shopmail check-shop reads it)'),
  ('page_cart', 'index.php?route=checkout/cart', 'cart page (SHOPMAIL_CART_PATH)'),
  ('page_account', 'index.php?route=account/account', 'account page (SHOPMAIL_ACCOUNT_PATH)'),
  ('page_orders', 'index.php?route=account/order', 'order history page (SHOPMAIL_ORDERS_PATH)'),
  ('page_product', 'index.php?route=product/product&product_id={id}', 'product page (SHOPMAIL_PRODUCT_PATH)'),
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
DROP FUNCTION IF EXISTS shopmail_offset;
DROP FUNCTION IF EXISTS shopmail_html_decode;
DROP FUNCTION IF EXISTS shopmail_oc_status;
DROP FUNCTION IF EXISTS shopmail_oc_mapped;
DROP FUNCTION IF EXISTS shopmail_oc_custom;
DROP FUNCTION IF EXISTS shopmail_truthy;

DELIMITER $$
CREATE FUNCTION shopmail_cfg(setting VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  RETURN (SELECT NULLIF(value, '') FROM shopmail_kit_config WHERE name = setting);
END$$

-- OpenCart writes local shop times; the views subtract this fixed numeric offset (minutes) to get UTC:
-- no CONVERT_TZ, no named zones (a server without time-zone tables returns NULL for them).
CREATE FUNCTION shopmail_offset() RETURNS INT
  READS SQL DATA
BEGIN
  RETURN CAST(COALESCE(shopmail_cfg('utc_offset_minutes'), '0') AS SIGNED);
END$$

-- UTC -> local shop time, for the coupon bridge (its times are Shopmail's, never zero dates).
CREATE FUNCTION shopmail_local(t DATETIME) RETURNS DATETIME
  READS SQL DATA
BEGIN
  RETURN t + INTERVAL shopmail_offset() MINUTE;
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

-- Contract status of an OpenCart order status; NULL: none (a config row with an empty value) or not
-- mapped at all (no config row: see shopmail_oc_mapped).
CREATE FUNCTION shopmail_oc_status(status_id INT) RETURNS VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  RETURN shopmail_cfg(CONCAT('status_', status_id));
END$$

-- 1 when the status has a config row (mapped, possibly to "none"), 0 for a status the kit does not know
-- (a status the shop added): such orders keep their raw status ('opencart-17'), which the data checks
-- set aside and `shopmail check-shop` lists with the row to add.
CREATE FUNCTION shopmail_oc_mapped(status_id INT) RETURNS TINYINT
  READS SQL DATA
BEGIN
  RETURN EXISTS (SELECT 1 FROM shopmail_kit_config WHERE name = CONCAT('status_', status_id));
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
  CONVERT(TRIM(c.email) USING utf8mb4) AS email,
  CONVERT(shopmail_html_decode(c.firstname) USING utf8mb4) AS first_name,
  CONVERT(shopmail_html_decode(c.lastname) USING utf8mb4) AS last_name,
  CONVERT(CASE shopmail_oc_custom(c.custom_field, 'gender_custom_field_id')
    WHEN shopmail_cfg('gender_female_value') THEN 'f'
    WHEN shopmail_cfg('gender_male_value') THEN 'm'
  END USING utf8mb4) AS gender,
  CAST(shopmail_oc_custom(c.custom_field, 'birthday_custom_field_id') AS DATE) AS birth_date,
  CONVERT(shopmail_html_decode(NULLIF(a.city, '')) USING utf8mb4) AS city,
  IF(c.date_added < '1000-01-01', c.date_added, c.date_added - INTERVAL shopmail_offset() MINUTE) AS registered_at,
  CASE
    WHEN shopmail_cfg('consent_custom_field_id') IS NULL THEN c.newsletter = 1
    ELSE shopmail_truthy(shopmail_oc_custom(c.custom_field, 'consent_custom_field_id'))
  END AS marketing_consent,
  CAST(NULL AS CHAR(32)) AS discount_card,
  CONVERT(LOWER(LEFT(l.code, 2)) USING utf8mb4) AS language
FROM oc_customer c
LEFT JOIN oc_address a ON a.address_id = c.address_id
LEFT JOIN oc_language l ON l.language_id = c.language_id
UNION ALL
SELECT
  -o.order_id,
  CONVERT(TRIM(o.email) USING utf8mb4),
  CONVERT(shopmail_html_decode(o.firstname) USING utf8mb4),
  CONVERT(shopmail_html_decode(o.lastname) USING utf8mb4),
  NULL,
  NULL,
  CONVERT(shopmail_html_decode(NULLIF(o.payment_city, '')) USING utf8mb4),
  IF(o.date_added < '1000-01-01', o.date_added, o.date_added - INTERVAL shopmail_offset() MINUTE),
  0,
  NULL,
  CONVERT(LOWER(LEFT(l.code, 2)) USING utf8mb4)
FROM oc_order o
LEFT JOIN oc_language l ON l.language_id = o.language_id
WHERE o.customer_id = 0 AND o.order_status_id > 0;

-- order_status_id 0 = a checkout never confirmed ("missing order"): not an order.
-- Amounts in the order's currency (OpenCart keeps the default currency and the rate).
-- Status: the mapped current status, else the last mapped status of the history (e.g. Failed, which
-- has none), else `received`; a status without a config row stays raw ('opencart-17').
CREATE OR REPLACE VIEW orders AS
SELECT
  o.order_id AS id,
  IF(o.customer_id = 0, -o.order_id, o.customer_id) AS customer_id,
  CONVERT(IF(shopmail_oc_mapped(o.order_status_id) = 0, CONCAT('opencart-', o.order_status_id),
    COALESCE(
      shopmail_oc_status(o.order_status_id),
      (SELECT shopmail_oc_status(h.order_status_id) FROM oc_order_history h
       WHERE h.order_id = o.order_id AND shopmail_oc_status(h.order_status_id) IS NOT NULL
       ORDER BY h.date_added DESC, h.order_history_id DESC LIMIT 1),
      'received'
    )) USING utf8mb4) AS status,
  IF(o.date_added < '1000-01-01', o.date_added, o.date_added - INTERVAL shopmail_offset() MINUTE) AS created_at,
  ROUND(o.total * o.currency_value, 2) AS total,
  CONVERT(o.currency_code USING utf8mb4) AS currency,
  CAST(NULL AS CHAR(64)) AS tracking_number
FROM oc_order o
WHERE o.order_status_id > 0;

-- First time each contract status was reached (oc_order_history), plus `received` at order time.
CREATE OR REPLACE VIEW order_status_history AS
SELECT order_id, CONVERT(status USING utf8mb4) AS status, MIN(changed_at) AS changed_at
FROM (
  SELECT h.order_id, shopmail_oc_status(h.order_status_id) AS status,
    IF(h.date_added < '1000-01-01', h.date_added, h.date_added - INTERVAL shopmail_offset() MINUTE) AS changed_at
  FROM oc_order_history h
  JOIN oc_order o ON o.order_id = h.order_id AND o.order_status_id > 0
  UNION ALL
  SELECT o.order_id, 'received',
    IF(o.date_added < '1000-01-01', o.date_added, o.date_added - INTERVAL shopmail_offset() MINUTE)
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
  CONVERT(shopmail_html_decode(COALESCE(NULLIF(pd.name, ''), p.model)) USING utf8mb4) AS name,
  CONVERT(shopmail_html_decode(m.name) USING utf8mb4) AS brand,
  CONVERT((SELECT shopmail_html_decode(cd.name)
   FROM oc_product_to_category pc
   JOIN oc_category_description cd
     ON cd.category_id = pc.category_id AND cd.language_id = shopmail_cfg('language_id')
   WHERE pc.product_id = p.product_id
   ORDER BY pc.category_id LIMIT 1) USING utf8mb4) AS category,
  ROUND(p.price, 2) AS price,
  CONVERT(CONCAT(shopmail_cfg('store_url'), 'index.php?route=product/product&product_id=', p.product_id) USING utf8mb4) AS url,
  CONVERT(IF(p.image IS NULL OR p.image = '', NULL, CONCAT(shopmail_cfg('store_url'), 'image/', p.image)) USING utf8mb4) AS image_url,
  (p.status = 1 AND p.quantity > 0) AS in_stock,
  (p.quantity >= CAST(COALESCE(shopmail_cfg('overstock_quantity'), '100') AS SIGNED)) AS overstock,
  IF(p.date_added < '1000-01-01', p.date_added, p.date_added - INTERVAL shopmail_offset() MINUTE) AS created_at
FROM oc_product p
LEFT JOIN oc_product_description pd
  ON pd.product_id = p.product_id AND pd.language_id = shopmail_cfg('language_id')
LEFT JOIN oc_manufacturer m ON m.manufacturer_id = p.manufacturer_id;

-- oc_cart rows of logged-in customers (storefront only, api_id 0): one cart per customer, updated when
-- a product was last added. Guest carts live in a session only: not mailable.
CREATE OR REPLACE VIEW carts AS
SELECT c.customer_id AS id, c.customer_id AS customer_id,
  IF(MAX(c.date_added) < '1000-01-01', MAX(c.date_added), MAX(c.date_added) - INTERVAL shopmail_offset() MINUTE) AS updated_at
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

-- What the kit could not map, for `shopmail check-shop`: order statuses without a config row (their
-- orders are set aside by the data checks), with the number of orders and the row to add.
CREATE OR REPLACE VIEW shopmail_kit_unmapped AS
SELECT
  CONVERT('status' USING utf8mb4) AS what,
  CONVERT(CONCAT('opencart-', o.order_status_id) USING utf8mb4) AS value,
  CONVERT(COALESCE(MAX(st.name), '') USING utf8mb4) AS label,
  COUNT(DISTINCT o.order_id) AS `rows`,
  CONVERT(CONCAT('INSERT INTO shopmail_kit_config (name, value) VALUES (''status_', o.order_status_id,
    ''', ''<received|paid|accepted|shipped|delivered|cancelled, or empty for none>'')') USING utf8mb4) AS fix
FROM oc_order o
LEFT JOIN oc_order_status st ON st.order_status_id = o.order_status_id AND st.language_id = shopmail_cfg('language_id')
WHERE o.order_status_id > 0 AND shopmail_oc_mapped(o.order_status_id) = 0
GROUP BY o.order_status_id;
