-- Shopmail platform kit: WooCommerce with HPOS order tables (MariaDB/MySQL) -> the Shopmail shop data contract.
-- Needs "High-performance order storage" on (WooCommerce > Settings > Advanced > Features): orders are read
-- from wp_wc_orders, wp_wc_order_addresses and wp_wc_order_operational_data, not from wp_posts.
-- Table names use WordPress's default prefix `wp_`; with another $table_prefix replace it first:
--   sed 's/\bwp_/myprefix_/g' views.sql | mysql shop
-- Works under the server's default strict sql_mode (zero dates included: WordPress's default for
-- user_registered and post_date_gmt) and with any utf8mb4/utf8 collation of the site's tables, even mixed
-- (WooCommerce's tables created years after wp_users), and of the connection: nothing to replace.
-- Times: the views read WordPress's *_gmt columns and wp_users.user_registered, all UTC: no offset, no
-- CONVERT_TZ. Run as a user allowed to create views and functions (with binary logging on, MariaDB also
-- needs log_bin_trust_function_creators=1 or SUPER). Re-running replaces everything; the config rows you
-- changed are kept (INSERT IGNORE).
--
-- Collations. MariaDB and MySQL refuse to compare (or UNION) two strings of different collations unless one
-- side may be converted (errors 1267, 1271); a stored function's result and a literal may be converted,
-- a column or a routine's variable may not. So: the kit's own objects (config table, function parameters
-- and results, the literals below) are all utf8mb4_unicode_520_ci; a kit value meets a WordPress column only
-- as a function result or a literal (the column's collation wins) or with an explicit `COLLATE utf8mb4_bin`;
-- and every text column a view returns (and every text taken from two tables) is CONVERT(... USING utf8mb4),
-- which Shopmail's queries, in the connection's collation whatever it is, may compare with.

-- String literals in the views and functions take the connection's collation: make it the kit's.
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE IF NOT EXISTS shopmail_kit_config (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  value VARCHAR(255) NOT NULL DEFAULT '',
  meaning VARCHAR(255) NOT NULL DEFAULT ''
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;

INSERT IGNORE INTO shopmail_kit_config (name, value, meaning) VALUES
  ('store_url', 'https://shop.example/', 'home URL of the WordPress site, with the trailing slash'),
  ('overstock_quantity', '100', 'stock quantity (wc_product_meta_lookup) from which a product counts as overstock'),
  ('brand_taxonomy', 'product_brand', 'taxonomy of product brands (WooCommerce 9.6+: product_brand; plugins: pwb-brand, yith_product_brand)'),
  ('birthday_meta_key', '', 'wp_usermeta key holding the birthday (empty: no birthdays)'),
  ('birthday_format', '%Y-%m-%d', 'STR_TO_DATE format of that value, e.g. %d/%m/%Y'),
  ('gender_meta_key', '', 'wp_usermeta key holding the gender (empty: none)'),
  ('gender_female_value', 'female', 'its stored value meaning female (compared case-insensitively)'),
  ('gender_male_value', 'male', 'its stored value meaning male'),
  ('consent_meta_key', '', 'wp_usermeta key of the marketing opt-in (1/yes/true/on); empty: nobody has consent'),
  ('utc_offset_minutes', '0', 'offset of the WordPress time zone: only for the local post_date of bridged coupons'),
  ('kit', 'woocommerce_hpos', 'the installed Shopmail kit (shopmail check-shop reads it)'),
  ('page_cart', 'cart/', 'cart page (SHOPMAIL_CART_PATH)'),
  ('page_account', 'my-account/', 'account page (SHOPMAIL_ACCOUNT_PATH)'),
  ('page_orders', 'my-account/orders/', 'order history page (SHOPMAIL_ORDERS_PATH)'),
  ('page_product', '?post_type=product&p={id}', 'product page (SHOPMAIL_PRODUCT_PATH)'),
  ('status_wc-pending', 'received', 'Pending payment'),
  ('status_wc-on-hold', 'received', 'On hold (awaiting a bank transfer or cheque)'),
  ('status_wc-processing', 'paid', 'Processing (paid, to be fulfilled)'),
  ('status_wc-completed', 'delivered', 'Completed (fulfilled); set shipped if Completed means dispatched'),
  ('status_wc-cancelled', 'cancelled', 'Cancelled'),
  ('status_wc-refunded', '', 'Refunded: no contract status'),
  ('status_wc-failed', '', 'Failed (payment failed): no contract status');

DROP FUNCTION IF EXISTS shopmail_cfg;
DROP FUNCTION IF EXISTS shopmail_html_decode;
DROP FUNCTION IF EXISTS shopmail_wc_status;
DROP FUNCTION IF EXISTS shopmail_wc_mapped;
DROP FUNCTION IF EXISTS shopmail_usermeta;
DROP FUNCTION IF EXISTS shopmail_truthy;
DROP FUNCTION IF EXISTS shopmail_local;

DELIMITER $$
CREATE FUNCTION shopmail_cfg(setting VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci
  READS SQL DATA
BEGIN
  RETURN (SELECT NULLIF(value, '') FROM shopmail_kit_config WHERE name = setting);
END$$

-- UTC -> WordPress local time with a fixed numeric offset (only for the coupon post's post_date).
CREATE FUNCTION shopmail_local(t DATETIME) RETURNS DATETIME
  READS SQL DATA
BEGIN
  RETURN t + INTERVAL CAST(COALESCE(shopmail_cfg('utc_offset_minutes'), '0') AS SIGNED) MINUTE;
END$$

-- WordPress and WooCommerce store some text entity-encoded (esc_html'd names from forms and imports:
-- O&#039;Brien; titles saved by users without unfiltered_html: Tea &amp; Biscuits). &amp; last, so
-- '&amp;quot;' stays '&quot;' (decoded once, as PHP would).
CREATE FUNCTION shopmail_html_decode(s TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci) RETURNS TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci
  DETERMINISTIC NO SQL
BEGIN
  RETURN REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(
    s, '&quot;', '"'), '&#039;', ''''), '&#39;', ''''), '&apos;', ''''), '&#8217;', '’'), '&lt;', '<'),
    '&gt;', '>'), '&amp;', '&');
END$$

-- Contract status of a WooCommerce order status ('wc-completed'); NULL: none (a config row with an empty
-- value) or not mapped at all (no config row: see shopmail_wc_mapped).
CREATE FUNCTION shopmail_wc_status(status VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci) RETURNS VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci
  READS SQL DATA
BEGIN
  RETURN shopmail_cfg(CONCAT('status_', status));
END$$

-- 1 when the status has a config row (mapped, possibly to "none"), 0 for a status the kit does not know
-- (plugins add e.g. wc-shipped): such orders keep their raw status, which the data checks set aside and
-- `shopmail check-shop` lists with the row to add (never silently read as another status).
CREATE FUNCTION shopmail_wc_mapped(status VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci) RETURNS TINYINT
  READS SQL DATA
BEGIN
  RETURN EXISTS (SELECT 1 FROM shopmail_kit_config WHERE name = CONCAT('status_', status));
END$$

-- One wp_usermeta value of a user, under the meta key a config row names (NULL when not configured). The
-- key is compared as the function result shopmail_cfg(...), so wp_usermeta's own collation decides.
CREATE FUNCTION shopmail_usermeta(uid BIGINT UNSIGNED, setting VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci
  READS SQL DATA
BEGIN
  IF shopmail_cfg(setting) IS NULL THEN
    RETURN NULL;
  END IF;
  RETURN (SELECT NULLIF(TRIM(LEFT(m.meta_value, 255)), '') FROM wp_usermeta m
          WHERE m.user_id = uid AND m.meta_key = shopmail_cfg(setting) ORDER BY m.umeta_id DESC LIMIT 1);
END$$

-- A checkbox/consent value: 1 for 1/true/yes/on (any case), else 0.
CREATE FUNCTION shopmail_truthy(v VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci) RETURNS TINYINT
  DETERMINISTIC NO SQL
BEGIN
  RETURN COALESCE(LOWER(TRIM(v)) IN ('1', 'true', 'yes', 'on'), 0);
END$$
DELIMITER ;

-- Orders Shopmail reads: real orders (type shop_order, no refunds), not drafts of the block checkout
-- (wc-checkout-draft), not trashed.
CREATE OR REPLACE VIEW shopmail_wc_orders AS
SELECT o.*
FROM wp_wc_orders o
WHERE o.type = 'shop_order'
  AND o.status NOT IN ('wc-checkout-draft', 'trash', 'auto-draft', 'draft')
  AND o.date_created_gmt IS NOT NULL;

-- Registered customers (every WordPress user: names from wc_customer_lookup, else the user's
-- first_name/last_name, else the billing name), then guests: one pseudo-customer per guest order
-- (id = -order id), never marketing consent, so guests get service mails about their order only.
CREATE OR REPLACE VIEW customers AS
SELECT
  u.ID AS id,
  CONVERT(TRIM(u.user_email) USING utf8mb4) AS email,
  CONVERT(shopmail_html_decode(COALESCE(NULLIF(CONVERT(cl.first_name USING utf8mb4), ''),
    (SELECT NULLIF(CONVERT(m.meta_value USING utf8mb4), '') FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'first_name' LIMIT 1),
    (SELECT NULLIF(CONVERT(m.meta_value USING utf8mb4), '') FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'billing_first_name' LIMIT 1)))
    USING utf8mb4) AS first_name,
  CONVERT(shopmail_html_decode(COALESCE(NULLIF(CONVERT(cl.last_name USING utf8mb4), ''),
    (SELECT NULLIF(CONVERT(m.meta_value USING utf8mb4), '') FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'last_name' LIMIT 1),
    (SELECT NULLIF(CONVERT(m.meta_value USING utf8mb4), '') FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'billing_last_name' LIMIT 1)))
    USING utf8mb4) AS last_name,
  CONVERT(CASE LOWER(shopmail_usermeta(u.ID, 'gender_meta_key'))
    WHEN LOWER(shopmail_cfg('gender_female_value')) THEN 'f'
    WHEN LOWER(shopmail_cfg('gender_male_value')) THEN 'm'
  END USING utf8mb4) AS gender,
  STR_TO_DATE(shopmail_usermeta(u.ID, 'birthday_meta_key'), COALESCE(shopmail_cfg('birthday_format'), '%Y-%m-%d'))
    AS birth_date,
  CONVERT(shopmail_html_decode(COALESCE(NULLIF(CONVERT(cl.city USING utf8mb4), ''),
    (SELECT NULLIF(CONVERT(m.meta_value USING utf8mb4), '') FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'billing_city' LIMIT 1)))
    USING utf8mb4) AS city,
  u.user_registered AS registered_at,
  shopmail_truthy(shopmail_usermeta(u.ID, 'consent_meta_key')) AS marketing_consent,
  CAST(NULL AS CHAR(32)) AS discount_card,
  (SELECT CONVERT(NULLIF(LOWER(LEFT(m.meta_value, 2)), '') USING utf8mb4) FROM wp_usermeta m
   WHERE m.user_id = u.ID AND m.meta_key = 'locale' LIMIT 1) AS language
FROM wp_users u
LEFT JOIN wp_wc_customer_lookup cl ON cl.user_id = u.ID
UNION ALL
SELECT
  -o.id,
  CONVERT(TRIM(COALESCE(NULLIF(CONVERT(o.billing_email USING utf8mb4), ''), CONVERT(a.email USING utf8mb4))) USING utf8mb4),
  CONVERT(shopmail_html_decode(a.first_name) USING utf8mb4),
  CONVERT(shopmail_html_decode(a.last_name) USING utf8mb4),
  NULL,
  NULL,
  CONVERT(shopmail_html_decode(NULLIF(a.city, '')) USING utf8mb4),
  o.date_created_gmt,
  0,
  NULL,
  NULL
FROM shopmail_wc_orders o
LEFT JOIN wp_wc_order_addresses a ON a.order_id = o.id AND a.address_type = 'billing'
WHERE COALESCE(o.customer_id, 0) = 0;

-- Amounts in the order's currency (WooCommerce stores the order total in it). Status = the mapped current
-- status, else the last step reached (completed, paid), else `received` (e.g. Failed, Refunded); a status
-- without a config row (a plugin's wc-shipped) stays raw.
CREATE OR REPLACE VIEW orders AS
SELECT
  o.id AS id,
  IF(COALESCE(o.customer_id, 0) = 0, -o.id, o.customer_id) AS customer_id,
  CONVERT(IF(shopmail_wc_mapped(o.status) = 0, o.status,
    COALESCE(
      shopmail_wc_status(o.status),
      IF(od.date_completed_gmt IS NOT NULL, shopmail_wc_status('wc-completed'), NULL),
      IF(od.date_paid_gmt IS NOT NULL, 'paid', NULL),
      'received'
    )) USING utf8mb4) AS status,
  o.date_created_gmt AS created_at,
  ROUND(COALESCE(o.total_amount, 0), 2) AS total,
  CONVERT(NULLIF(o.currency, '') USING utf8mb4) AS currency,
  CAST(NULL AS CHAR(64)) AS tracking_number
FROM shopmail_wc_orders o
LEFT JOIN wp_wc_order_operational_data od ON od.order_id = o.id;

-- WooCommerce keeps no status log, only timestamps: received at date_created_gmt, paid at date_paid_gmt,
-- the Completed status's contract status at date_completed_gmt, and the current status (e.g. cancelled,
-- which has no timestamp of its own) at date_updated_gmt, the order's last change. First time per status.
CREATE OR REPLACE VIEW order_status_history AS
SELECT order_id, CONVERT(status USING utf8mb4) AS status, MIN(changed_at) AS changed_at
FROM (
  SELECT o.id AS order_id, 'received' AS status, o.date_created_gmt AS changed_at
  FROM shopmail_wc_orders o
  UNION ALL
  SELECT o.id, 'paid', od.date_paid_gmt
  FROM shopmail_wc_orders o JOIN wp_wc_order_operational_data od ON od.order_id = o.id
  WHERE od.date_paid_gmt IS NOT NULL
  UNION ALL
  SELECT o.id, shopmail_wc_status('wc-completed'), od.date_completed_gmt
  FROM shopmail_wc_orders o JOIN wp_wc_order_operational_data od ON od.order_id = o.id
  WHERE od.date_completed_gmt IS NOT NULL
  UNION ALL
  SELECT o.id, shopmail_wc_status(o.status), COALESCE(o.date_updated_gmt, o.date_created_gmt)
  FROM shopmail_wc_orders o
) steps
WHERE status IS NOT NULL
GROUP BY order_id, status;

-- Line items (order_item_type line_item) with their meta: the product (_product_id, the parent of a
-- variation), quantity (_qty) and the line total after discounts, without tax (_line_total), in the
-- order currency; summed per product.
CREATE OR REPLACE VIEW order_items AS
SELECT
  i.order_id,
  CAST(pid.meta_value AS UNSIGNED) AS product_id,
  SUM(CAST(qty.meta_value AS SIGNED)) AS qty,
  ROUND(SUM(CAST(lt.meta_value AS DECIMAL(26, 8))) / NULLIF(SUM(CAST(qty.meta_value AS SIGNED)), 0), 2) AS price
FROM wp_woocommerce_order_items i
JOIN shopmail_wc_orders o ON o.id = i.order_id
JOIN wp_woocommerce_order_itemmeta pid ON pid.order_item_id = i.order_item_id AND pid.meta_key = '_product_id'
JOIN wp_woocommerce_order_itemmeta qty ON qty.order_item_id = i.order_item_id AND qty.meta_key = '_qty'
LEFT JOIN wp_woocommerce_order_itemmeta lt ON lt.order_item_id = i.order_item_id AND lt.meta_key = '_line_total'
WHERE i.order_item_type = 'line_item' AND CAST(pid.meta_value AS UNSIGNED) > 0
GROUP BY i.order_id, CAST(pid.meta_value AS UNSIGNED)
HAVING SUM(CAST(qty.meta_value AS SIGNED)) > 0;

-- Products (wp_posts of type product, not trashed) with price and stock from wc_product_meta_lookup (the
-- lowest price of a variable product), first product_cat category, brand from the brand taxonomy,
-- featured image (_thumbnail_id). Drafts and private products stay (old orders refer to them) but are
-- never in stock.
CREATE OR REPLACE VIEW products AS
SELECT
  p.ID AS id,
  CONVERT(shopmail_html_decode(p.post_title) USING utf8mb4) AS name,
  CONVERT((SELECT shopmail_html_decode(t.name) FROM wp_term_relationships r
   JOIN wp_term_taxonomy tt ON tt.term_taxonomy_id = r.term_taxonomy_id AND tt.taxonomy = shopmail_cfg('brand_taxonomy')
   JOIN wp_terms t ON t.term_id = tt.term_id
   WHERE r.object_id = p.ID ORDER BY t.term_id LIMIT 1) USING utf8mb4) AS brand,
  CONVERT((SELECT shopmail_html_decode(t.name) FROM wp_term_relationships r
   JOIN wp_term_taxonomy tt ON tt.term_taxonomy_id = r.term_taxonomy_id AND tt.taxonomy = 'product_cat'
   JOIN wp_terms t ON t.term_id = tt.term_id
   WHERE r.object_id = p.ID ORDER BY t.term_id LIMIT 1) USING utf8mb4) AS category,
  ROUND(l.min_price, 2) AS price,
  CONVERT(CONCAT(shopmail_cfg('store_url'), '?post_type=product&p=', p.ID) USING utf8mb4) AS url,
  (SELECT CONVERT(NULLIF(img.guid, '') USING utf8mb4) FROM wp_postmeta th JOIN wp_posts img ON img.ID = th.meta_value
   WHERE th.post_id = p.ID AND th.meta_key = '_thumbnail_id' LIMIT 1) AS image_url,
  (p.post_status = 'publish' AND COALESCE(l.stock_status, 'instock') IN ('instock', 'onbackorder')) AS in_stock,
  (COALESCE(l.stock_quantity, 0) >= CAST(COALESCE(shopmail_cfg('overstock_quantity'), '100') AS SIGNED)) AS overstock,
  p.post_date_gmt AS created_at
FROM wp_posts p
LEFT JOIN wp_wc_product_meta_lookup l ON l.product_id = p.ID
WHERE p.post_type = 'product' AND p.post_status NOT IN ('trash', 'auto-draft');

-- No `carts` / `cart_items`: WooCommerce keeps carts as serialized PHP session data
-- (wp_woocommerce_sessions.session_value) and persistent carts as serialized user meta
-- (_woocommerce_persistent_cart_1), neither readable by SQL. Without the views the abandoned-cart mail
-- does not run (set SHOPMAIL_DISABLED_CAMPAIGNS=abandoned_cart; `shopmail check-shop` lists it).
DROP VIEW IF EXISTS carts;
DROP VIEW IF EXISTS cart_items;

-- WordPress sends its own password-reset mail: nothing for Shopmail to mail from.
CREATE OR REPLACE VIEW password_resets AS
SELECT
  CAST(0 AS SIGNED) AS id,
  CAST(0 AS SIGNED) AS customer_id,
  CAST(NULL AS DATETIME) AS requested_at,
  CAST('' AS CHAR(1000)) AS reset_url,
  CAST(NULL AS DATETIME) AS expires_at
FROM DUAL WHERE 1 = 0;

-- What the kit could not map, for `shopmail check-shop`: order statuses without a config row (plugins'
-- statuses; their orders are set aside by the data checks), with the number of orders and the row to add.
CREATE OR REPLACE VIEW shopmail_kit_unmapped AS
SELECT
  CONVERT('status' USING utf8mb4) AS what,
  CONVERT(o.status USING utf8mb4) AS value,
  CONVERT('' USING utf8mb4) AS label,
  COUNT(*) AS `rows`,
  CONVERT(CONCAT('INSERT INTO shopmail_kit_config (name, value) VALUES (''status_', o.status,
    ''', ''<received|paid|accepted|shipped|delivered|cancelled, or empty for none>'')') USING utf8mb4) AS fix
FROM shopmail_wc_orders o
WHERE shopmail_wc_mapped(o.status) = 0
GROUP BY o.status;
