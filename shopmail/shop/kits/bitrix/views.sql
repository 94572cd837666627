-- Shopmail platform kit: 1C-Bitrix "Управление сайтом" with the sale, catalog and iblock modules
-- (MariaDB/MySQL) -> the Shopmail shop data contract.
-- Reads the modules' own tables (b_user, b_sale_order, b_sale_basket, b_iblock_element, b_catalog_price,
-- ...) with Bitrix's table names (no prefix). Works under the server's default strict sql_mode (zero dates
-- included) and with any utf8mb4/utf8 collation of the site's tables, even mixed, and of the connection:
-- nothing to replace. Run as a user allowed to create views and functions (with binary logging on,
-- MariaDB also needs log_bin_trust_function_creators=1 or SUPER). Re-running replaces everything; the
-- config rows you changed are kept (INSERT IGNORE).
--
-- Collations. MariaDB and MySQL refuse to compare (or UNION) two strings of different collations unless
-- one side may be converted (errors 1267, 1271); a stored function's result and a literal may be
-- converted, a column or a routine's variable may not. So: the kit's own objects (config table, function
-- parameters and results, the literals below) are all utf8mb4_unicode_ci; a kit value meets a Bitrix column
-- only as a function result or a literal (the column's collation wins) or with an explicit
-- `COLLATE utf8mb4_bin`; two Bitrix columns (of tables that may differ) meet as `a = shopmail_text(b)`,
-- a function result again (a's collation wins, its index still works); and every text column a view
-- returns is CONVERT(... USING utf8mb4), which Shopmail's queries, in the connection's collation whatever
-- it is, may compare with.
-- Times. Bitrix writes the site's local time (the server's time zone): the views subtract the numeric
-- utc_offset_minutes inline (no CONVERT_TZ; no DATETIME function parameters, which raise error 1292 on a
-- zero date in strict mode); zero dates pass through unchanged (Shopmail reads them as NULL, reported).

-- String literals in the views and functions take the connection's collation: make it the kit's.
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS shopmail_kit_config (
  name VARCHAR(64) NOT NULL PRIMARY KEY,
  value VARCHAR(255) NOT NULL DEFAULT '',
  meaning VARCHAR(255) NOT NULL DEFAULT ''
) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO shopmail_kit_config (name, value, meaning) VALUES
  ('kit', 'bitrix', 'the installed Shopmail kit (shopmail check-shop reads it)'),
  ('store_url', 'https://shop.example/', 'the site''s URL with the trailing slash (product, image links)'),
  ('site_id', 's1', 'b_lang.LID of the site whose orders and carts Shopmail reads (empty: every site)'),
  ('language_id', 'ru', 'language of status and location names (b_sale_status_lang, b_sale_loc_name)'),
  ('utc_offset_minutes', '180', 'offset of the time zone Bitrix writes times in (Moscow: 180); 0 for UTC'),
  ('price_group_id', '', 'b_catalog_group.ID of the price shown in mails (empty: the base price type)'),
  ('brand_property_code', 'BRAND', 'iblock property CODE of the brand (string, list or element link)'),
  ('overstock_quantity', '100', 'b_catalog_product.QUANTITY from which a product counts as overstock'),
  ('consent_group_id', '', 'b_group.ID whose members agreed to marketing mail (empty: nobody has consent)'),
  ('city_property_code', 'CITY', 'order property CODE of the city (location properties are read too)'),
  ('upload_dir', 'upload', 'the main module''s upload folder (pictures: /upload/<SUBDIR>/<FILE_NAME>)'),
  ('system_auth_ids', 'bot,imconnector,replica,email,__controller,saleanonymous,call,document_editor,shop',
   'b_user.EXTERNAL_AUTH_ID of technical users that are not customers'),
  ('page_cart', 'personal/cart/', 'cart page (SHOPMAIL_CART_PATH)'),
  ('page_account', 'personal/', 'account page (SHOPMAIL_ACCOUNT_PATH)'),
  ('page_orders', 'personal/orders/', 'order history page (SHOPMAIL_ORDERS_PATH)'),
  ('status_N', 'received', 'Принят, ожидается оплата'),
  ('status_P', 'paid', 'Оплачен, формируется к отправке'),
  ('status_F', 'delivered', 'Выполнен');

DROP FUNCTION IF EXISTS shopmail_cfg;
DROP FUNCTION IF EXISTS shopmail_offset;
DROP FUNCTION IF EXISTS shopmail_local;
DROP FUNCTION IF EXISTS shopmail_bx_status;
DROP FUNCTION IF EXISTS shopmail_bx_mapped;
DROP FUNCTION IF EXISTS shopmail_bx_price_group;
DROP FUNCTION IF EXISTS shopmail_serialized;
DROP FUNCTION IF EXISTS shopmail_amount;
DROP FUNCTION IF EXISTS shopmail_coupon_discount;
DROP FUNCTION IF EXISTS shopmail_coupon_problem;
DROP FUNCTION IF EXISTS shopmail_bx_url;
DROP FUNCTION IF EXISTS shopmail_bx_brand;
DROP FUNCTION IF EXISTS shopmail_text;

DELIMITER $$
CREATE FUNCTION shopmail_cfg(setting VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  RETURN (SELECT NULLIF(value, '') FROM shopmail_kit_config WHERE name = setting);
END$$

-- A text as a function result: compared with a column, the column's collation wins (see "Collations").
CREATE FUNCTION shopmail_text(s TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  DETERMINISTIC NO SQL
BEGIN
  RETURN s;
END$$

-- Bitrix's local time minus this many minutes is UTC.
CREATE FUNCTION shopmail_offset() RETURNS INT
  READS SQL DATA
BEGIN
  RETURN CAST(COALESCE(shopmail_cfg('utc_offset_minutes'), '0') AS SIGNED);
END$$

-- UTC -> Bitrix local time, for the coupon bridge (its times are Shopmail's, never zero dates).
CREATE FUNCTION shopmail_local(t DATETIME) RETURNS DATETIME
  READS SQL DATA
BEGIN
  RETURN t + INTERVAL shopmail_offset() MINUTE;
END$$

-- Contract status of a Bitrix order status ('N', 'P', 'F', a shop's own 'DA'); NULL: none (an empty
-- config row) or not mapped at all (no config row: see shopmail_bx_mapped).
CREATE FUNCTION shopmail_bx_status(status_id VARCHAR(2) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  RETURN shopmail_cfg(CONCAT('status_', status_id));
END$$

-- 1 when the status has a config row (mapped, possibly to "none"), 0 for a status the kit does not know:
-- such orders keep their raw status ('bitrix-DA'), which the data checks set aside and
-- `shopmail check-shop` lists with the row to add.
CREATE FUNCTION shopmail_bx_mapped(status_id VARCHAR(2) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS TINYINT
  READS SQL DATA
BEGIN
  RETURN EXISTS (SELECT 1 FROM shopmail_kit_config WHERE name = CONCAT('status_', status_id));
END$$

-- The price type (b_catalog_group) whose prices the mails show.
CREATE FUNCTION shopmail_bx_price_group() RETURNS INT
  READS SQL DATA
BEGIN
  RETURN COALESCE(CAST(shopmail_cfg('price_group_id') AS SIGNED),
                  (SELECT ID FROM b_catalog_group WHERE BASE = 'Y' ORDER BY ID LIMIT 1));
END$$

-- One string value of a PHP-serialized array (b_sale_order_change.DATA: a:1:{s:9:"STATUS_ID";s:1:"P";}).
CREATE FUNCTION shopmail_serialized(data TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci, field VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  DETERMINISTIC NO SQL
BEGIN
  DECLARE marker VARCHAR(80) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci DEFAULT CONCAT('s:', CHAR_LENGTH(field), ':"', field, '";s:');
  IF data IS NULL OR LOCATE(marker, data) = 0 THEN
    RETURN NULL;
  END IF;
  RETURN SUBSTRING_INDEX(SUBSTRING_INDEX(SUBSTRING(data, LOCATE(marker, data) + CHAR_LENGTH(marker)), '"', 2), '"', -1);
END$$

-- A product page: the iblock's DETAIL_PAGE_URL template filled in, after store_url; NULL without a template
-- or when a placeholder is left (an element without a code for #ELEMENT_CODE#, #SECTION_CODE_PATH# of
-- nested sections is only the element's own section code).
CREATE FUNCTION shopmail_bx_url(
  template VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci, element_id INT,
  element_code VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci, section_id INT,
  section_code VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci, iblock_id INT,
  iblock_code VARCHAR(50) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci,
  iblock_type VARCHAR(50) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
) RETURNS VARCHAR(1000) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  DECLARE path VARCHAR(1000) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci;
  IF template IS NULL OR TRIM(template) = '' THEN
    RETURN NULL;
  END IF;
  SET path = REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(
    template, '#SITE_DIR#', ''), '#ELEMENT_ID#', element_id), '#ID#', element_id),
    '#ELEMENT_CODE#', COALESCE(NULLIF(element_code, ''), '#')), '#CODE#', COALESCE(NULLIF(element_code, ''), '#')),
    '#SECTION_ID#', COALESCE(section_id, '#')), '#SECTION_CODE_PATH#', COALESCE(NULLIF(section_code, ''), '#')),
    '#SECTION_CODE#', COALESCE(NULLIF(section_code, ''), '#')), '#IBLOCK_ID#', iblock_id),
    '#IBLOCK_CODE#', COALESCE(NULLIF(iblock_code, ''), '#')), '#IBLOCK_TYPE_ID#', COALESCE(iblock_type, '#'));
  IF LOCATE('#', path) > 0 THEN
    RETURN NULL;
  END IF;
  RETURN CONCAT(TRIM(TRAILING '/' FROM COALESCE(shopmail_cfg('store_url'), '')), '/', TRIM(LEADING '/' FROM path));
END$$

-- The brand of an element: its property brand_property_code, a string, a list value or a linked element.
CREATE FUNCTION shopmail_bx_brand(element_id INT, iblock_id INT) RETURNS VARCHAR(255) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  IF element_id IS NULL THEN
    RETURN NULL;
  END IF;
  RETURN (SELECT CASE pp.PROPERTY_TYPE
        WHEN 'L' THEN (SELECT en.VALUE FROM b_iblock_property_enum en WHERE en.ID = ep.VALUE_ENUM)
        WHEN 'E' THEN (SELECT be.NAME FROM b_iblock_element be WHERE be.ID = CAST(ep.VALUE AS SIGNED))
        ELSE NULLIF(TRIM(ep.VALUE), '')
      END
    FROM b_iblock_property pp
    JOIN b_iblock_element_property ep ON ep.IBLOCK_PROPERTY_ID = pp.ID AND ep.IBLOCK_ELEMENT_ID = element_id
    WHERE pp.IBLOCK_ID = iblock_id AND pp.CODE = shopmail_cfg('brand_property_code')
    ORDER BY ep.ID LIMIT 1);
END$$

-- A coupon value as the config names it: 15.00 -> '15', 7.50 -> '7.5'.
CREATE FUNCTION shopmail_amount(v DECIMAL(12,2)) RETURNS VARCHAR(20) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  DETERMINISTIC NO SQL
BEGIN
  RETURN TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST(v AS CHAR)));
END$$

-- The sale discount (cart rule with coupons) that gives a Shopmail coupon its value: the config row
-- discount_P_<value> (percent) or discount_F_<value> (fixed amount), e.g. discount_P_15.
CREATE FUNCTION shopmail_coupon_discount(v DECIMAL(12,2), is_percent TINYINT) RETURNS INT
  READS SQL DATA
BEGIN
  RETURN CAST(shopmail_cfg(CONCAT('discount_', IF(is_percent, 'P', 'F'), '_', shopmail_amount(v))) AS SIGNED);
END$$

-- Why the bridge cannot create a coupon of this value (NULL: it can). `shopmail check-shop` asks it for
-- every enabled campaign's coupon.
CREATE FUNCTION shopmail_coupon_problem(v DECIMAL(12,2), is_percent TINYINT) RETURNS VARCHAR(400) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
  READS SQL DATA
BEGIN
  DECLARE discount INT DEFAULT shopmail_coupon_discount(v, is_percent);
  DECLARE setting VARCHAR(64) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
    DEFAULT CONCAT('discount_', IF(is_percent, 'P', 'F'), '_', shopmail_amount(v));
  IF discount IS NULL THEN
    RETURN CONCAT('no sale discount for ', shopmail_amount(v), IF(is_percent, ' %', ' (fixed)'),
      ' coupons: create a cart rule with coupons (Магазин > Маркетинг > Правила работы с корзиной) and ',
      'INSERT INTO shopmail_kit_config (name, value) VALUES (''', setting, ''', ''<its ID>'')');
  END IF;
  IF NOT EXISTS (SELECT 1 FROM b_sale_discount WHERE ID = discount AND ACTIVE = 'Y' AND USE_COUPONS = 'Y') THEN
    RETURN CONCAT('sale discount ', discount, ' (', setting, ') is not an active cart rule with coupons');
  END IF;
  RETURN NULL;
END$$
DELIMITER ;

-- Orders of the configured site.
CREATE OR REPLACE VIEW shopmail_bx_orders AS
SELECT o.*
FROM b_sale_order o
WHERE shopmail_cfg('site_id') IS NULL OR o.LID = shopmail_cfg('site_id');

-- Every Bitrix user but technical ones (bots, connectors: EXTERNAL_AUTH_ID). Buyers who ordered without
-- registering were registered by the sale module: no guests here. Consent = membership (active today) in
-- the configured group, for active, unblocked users.
CREATE OR REPLACE VIEW customers AS
SELECT
  u.ID AS id,
  CONVERT(TRIM(u.EMAIL) USING utf8mb4) AS email,
  CONVERT(NULLIF(TRIM(u.NAME), '') USING utf8mb4) AS first_name,
  CONVERT(NULLIF(TRIM(u.LAST_NAME), '') USING utf8mb4) AS last_name,
  CONVERT(CASE UPPER(u.PERSONAL_GENDER) WHEN 'F' THEN 'f' WHEN 'M' THEN 'm' END USING utf8mb4) AS gender,
  u.PERSONAL_BIRTHDAY AS birth_date,
  COALESCE(
    CONVERT(NULLIF(TRIM(u.PERSONAL_CITY), '') USING utf8mb4),
    (SELECT IF(p.IS_LOCATION = 'Y',
         (SELECT CONVERT(n.NAME USING utf8mb4) FROM b_sale_location loc
          JOIN b_sale_loc_name n ON n.LOCATION_ID = loc.ID AND n.LANGUAGE_ID = shopmail_cfg('language_id')
          WHERE loc.CODE = shopmail_text(v.VALUE) LIMIT 1),
         CONVERT(NULLIF(TRIM(v.VALUE), '') USING utf8mb4))
     FROM shopmail_bx_orders o
     JOIN b_sale_order_props_value v ON v.ORDER_ID = o.ID
     JOIN b_sale_order_props p ON p.ID = v.ORDER_PROPS_ID
     WHERE o.USER_ID = u.ID AND (p.CODE = shopmail_cfg('city_property_code') OR p.IS_LOCATION = 'Y')
       AND v.VALUE IS NOT NULL AND v.VALUE <> ''
     ORDER BY o.DATE_INSERT DESC, o.ID DESC, p.IS_LOCATION DESC LIMIT 1)
  ) AS city,
  IF(u.DATE_REGISTER < '1000-01-01', u.DATE_REGISTER, u.DATE_REGISTER - INTERVAL shopmail_offset() MINUTE) AS registered_at,
  (u.ACTIVE = 'Y' AND u.BLOCKED <> 'Y' AND EXISTS (
     SELECT 1 FROM b_user_group g
     WHERE g.USER_ID = u.ID AND g.GROUP_ID = CAST(shopmail_cfg('consent_group_id') AS SIGNED)
       AND (g.DATE_ACTIVE_FROM IS NULL OR g.DATE_ACTIVE_FROM <= NOW())
       AND (g.DATE_ACTIVE_TO IS NULL OR g.DATE_ACTIVE_TO >= NOW()))) AS marketing_consent,
  CAST(NULL AS CHAR(32)) AS discount_card,
  CONVERT(LOWER(COALESCE(NULLIF(TRIM(u.LANGUAGE_ID), ''), l.LANGUAGE_ID)) USING utf8mb4) AS language
FROM b_user u
LEFT JOIN b_lang l ON l.LID = shopmail_text(u.LID)
WHERE u.EXTERNAL_AUTH_ID IS NULL OR u.EXTERNAL_AUTH_ID = ''
   OR FIND_IN_SET(u.EXTERNAL_AUTH_ID, shopmail_cfg('system_auth_ids')) = 0;

-- Status: cancelled (the CANCELED flag, not a status in Bitrix), else the mapped STATUS_ID, else (a status
-- mapped to none) shipped / paid / received by the order's flags; a STATUS_ID without a config row stays
-- raw ('bitrix-DA'). Tracking number and carrier of the first real shipment that has one (else the
-- order's own TRACKING_NUMBER); carrier = a config row carrier_<delivery service ID>, else the service's
-- CODE, else the shipment's delivery name.
CREATE OR REPLACE VIEW orders AS
SELECT
  o.ID AS id,
  o.USER_ID AS customer_id,
  CONVERT(CASE
    WHEN o.CANCELED = 'Y' THEN 'cancelled'
    WHEN shopmail_bx_mapped(o.STATUS_ID) = 0 THEN CONCAT('bitrix-', o.STATUS_ID)
    ELSE COALESCE(
      shopmail_bx_status(o.STATUS_ID),
      IF(o.DEDUCTED = 'Y', 'shipped', NULL),
      IF(o.PAYED = 'Y', 'paid', NULL),
      'received')
  END USING utf8mb4) AS status,
  IF(o.DATE_INSERT < '1000-01-01', o.DATE_INSERT, o.DATE_INSERT - INTERVAL shopmail_offset() MINUTE) AS created_at,
  ROUND(o.PRICE, 2) AS total,
  CONVERT(o.CURRENCY USING utf8mb4) AS currency,
  COALESCE(
    (SELECT CONVERT(TRIM(d.TRACKING_NUMBER) USING utf8mb4) FROM b_sale_order_delivery d
     WHERE d.ORDER_ID = o.ID AND d.`SYSTEM` = 'N' AND TRIM(COALESCE(d.TRACKING_NUMBER, '')) <> ''
     ORDER BY d.ID LIMIT 1),
    CONVERT(NULLIF(TRIM(o.TRACKING_NUMBER), '') USING utf8mb4)) AS tracking_number,
  (SELECT COALESCE(
      shopmail_cfg(CONCAT('carrier_', d.DELIVERY_ID)),
      CONVERT(NULLIF(s.CODE, '') USING utf8mb4),
      CONVERT(NULLIF(d.DELIVERY_NAME, '') USING utf8mb4),
      CONVERT(s.NAME USING utf8mb4))
   FROM b_sale_order_delivery d LEFT JOIN b_sale_delivery_srv s ON s.ID = d.DELIVERY_ID
   WHERE d.ORDER_ID = o.ID AND d.`SYSTEM` = 'N'
   ORDER BY TRIM(COALESCE(d.TRACKING_NUMBER, '')) = '', d.ID LIMIT 1) AS carrier
FROM shopmail_bx_orders o;

-- First time each contract status was reached: received at DATE_INSERT, paid at DATE_PAYED, shipped when a
-- real shipment was deducted (отгружена), cancelled at DATE_CANCELED, and every mapped status change the
-- sale module logged (b_sale_order_change ORDER_STATUS_CHANGED, its STATUS_ID in the serialized DATA),
-- plus the current status at DATE_STATUS (the log is trimmed by Bitrix's cleanup agent).
CREATE OR REPLACE VIEW order_status_history AS
SELECT order_id, CONVERT(status USING utf8mb4) AS status,
  MIN(IF(local_at < '1000-01-01', local_at, local_at - INTERVAL shopmail_offset() MINUTE)) AS changed_at
FROM (
  SELECT o.ID AS order_id, 'received' AS status, o.DATE_INSERT AS local_at
  FROM shopmail_bx_orders o
  UNION ALL
  SELECT o.ID, 'paid', o.DATE_PAYED
  FROM shopmail_bx_orders o WHERE o.PAYED = 'Y' AND o.DATE_PAYED IS NOT NULL
  UNION ALL
  SELECT d.ORDER_ID, 'shipped', d.DATE_DEDUCTED
  FROM b_sale_order_delivery d JOIN shopmail_bx_orders o ON o.ID = d.ORDER_ID
  WHERE d.`SYSTEM` = 'N' AND d.DEDUCTED = 'Y' AND d.DATE_DEDUCTED IS NOT NULL
  UNION ALL
  SELECT o.ID, 'cancelled', COALESCE(o.DATE_CANCELED, o.DATE_UPDATE)
  FROM shopmail_bx_orders o WHERE o.CANCELED = 'Y'
  UNION ALL
  SELECT c.ORDER_ID, shopmail_bx_status(shopmail_serialized(c.DATA, 'STATUS_ID')), c.DATE_CREATE
  FROM b_sale_order_change c JOIN shopmail_bx_orders o ON o.ID = c.ORDER_ID
  WHERE c.TYPE = 'ORDER_STATUS_CHANGED'
  UNION ALL
  SELECT o.ID, shopmail_bx_status(o.STATUS_ID), o.DATE_STATUS
  FROM shopmail_bx_orders o WHERE o.CANCELED <> 'Y'
) steps
WHERE status IS NOT NULL
GROUP BY order_id, status;

-- Basket rows of the orders (set components left out: their set is the line), summed per product;
-- fractional quantities (kg, m) are rounded up; PRICE is the unit price after discounts, in the order
-- currency.
CREATE OR REPLACE VIEW order_items AS
SELECT
  b.ORDER_ID AS order_id,
  b.PRODUCT_ID AS product_id,
  CAST(CEIL(SUM(b.QUANTITY)) AS SIGNED) AS qty,
  ROUND(SUM(b.PRICE * b.QUANTITY) / NULLIF(SUM(b.QUANTITY), 0), 2) AS price
FROM b_sale_basket b
JOIN shopmail_bx_orders o ON o.ID = b.ORDER_ID
WHERE b.SET_PARENT_ID IS NULL OR b.SET_PARENT_ID = b.ID
GROUP BY b.ORDER_ID, b.PRODUCT_ID
HAVING SUM(b.QUANTITY) > 0;

-- Catalog products (iblock elements with a b_catalog_product row: simple products, products with offers
-- and the offers themselves, which orders refer to). Price: the configured price type (the base one by
-- default) for one unit; a product with offers (TYPE 3) the lowest price of its active offers. Brand: the
-- property brand_property_code (string, list or element link). Link: the iblock's DETAIL_PAGE_URL template
-- filled in (shopmail_bx_url; NULL when a placeholder is left: Shopmail then uses SHOPMAIL_PRODUCT_PATH).
-- An offer takes its product's brand, section, picture and page where it has none of its own (its
-- product: the offers iblock's SKU property, CML2_LINK). Workflow copies are left out.
CREATE OR REPLACE VIEW products AS
SELECT
  e.ID AS id,
  CONVERT(e.NAME USING utf8mb4) AS name,
  CONVERT(COALESCE(shopmail_bx_brand(e.ID, e.IBLOCK_ID), shopmail_bx_brand(pe.ID, pe.IBLOCK_ID)) USING utf8mb4) AS brand,
  CONVERT(sec.NAME USING utf8mb4) AS category,
  ROUND(COALESCE(
    (SELECT MIN(pr.PRICE) FROM b_catalog_price pr
     WHERE pr.PRODUCT_ID = e.ID AND pr.CATALOG_GROUP_ID = shopmail_bx_price_group()
       AND (pr.QUANTITY_FROM IS NULL OR pr.QUANTITY_FROM <= 1)),
    (SELECT MIN(pr.PRICE) FROM b_catalog_iblock oi
     JOIN b_iblock_element_property op ON op.IBLOCK_PROPERTY_ID = oi.SKU_PROPERTY_ID AND op.VALUE_NUM = e.ID
     JOIN b_iblock_element oe ON oe.ID = op.IBLOCK_ELEMENT_ID AND oe.ACTIVE = 'Y'
     JOIN b_catalog_price pr ON pr.PRODUCT_ID = oe.ID AND pr.CATALOG_GROUP_ID = shopmail_bx_price_group()
     WHERE oi.PRODUCT_IBLOCK_ID = e.IBLOCK_ID AND oi.SKU_PROPERTY_ID > 0)
  ), 2) AS price,
  CONVERT(COALESCE(
    shopmail_bx_url(ib.DETAIL_PAGE_URL, e.ID, e.CODE, e.IBLOCK_SECTION_ID, sec.CODE, ib.ID, ib.CODE, ib.IBLOCK_TYPE_ID),
    shopmail_bx_url(pib.DETAIL_PAGE_URL, pe.ID, pe.CODE, pe.IBLOCK_SECTION_ID, sec.CODE, pib.ID, pib.CODE,
                    pib.IBLOCK_TYPE_ID)) USING utf8mb4) AS url,
  (SELECT CONVERT(CONCAT(TRIM(TRAILING '/' FROM shopmail_cfg('store_url')), '/',
            COALESCE(shopmail_cfg('upload_dir'), 'upload'), '/', f.SUBDIR, '/', f.FILE_NAME) USING utf8mb4)
   FROM b_file f
   WHERE f.ID = COALESCE(e.DETAIL_PICTURE, e.PREVIEW_PICTURE, pe.DETAIL_PICTURE, pe.PREVIEW_PICTURE)) AS image_url,
  (e.ACTIVE = 'Y' AND COALESCE(cp.AVAILABLE, IF(cp.QUANTITY > 0, 'Y', 'N')) = 'Y') AS in_stock,
  (cp.QUANTITY >= CAST(COALESCE(shopmail_cfg('overstock_quantity'), '100') AS SIGNED)) AS overstock,
  IF(COALESCE(e.DATE_CREATE, e.TIMESTAMP_X) < '1000-01-01', COALESCE(e.DATE_CREATE, e.TIMESTAMP_X),
     COALESCE(e.DATE_CREATE, e.TIMESTAMP_X) - INTERVAL shopmail_offset() MINUTE) AS created_at
FROM b_iblock_element e
JOIN b_catalog_product cp ON cp.ID = e.ID
JOIN b_iblock ib ON ib.ID = e.IBLOCK_ID
LEFT JOIN b_catalog_iblock ci ON ci.IBLOCK_ID = e.IBLOCK_ID AND ci.SKU_PROPERTY_ID > 0
LEFT JOIN b_iblock_element_property sp ON sp.IBLOCK_PROPERTY_ID = ci.SKU_PROPERTY_ID AND sp.IBLOCK_ELEMENT_ID = e.ID
LEFT JOIN b_iblock_element pe ON pe.ID = sp.VALUE_NUM
LEFT JOIN b_iblock pib ON pib.ID = pe.IBLOCK_ID
LEFT JOIN b_iblock_section sec ON sec.ID = COALESCE(e.IBLOCK_SECTION_ID, pe.IBLOCK_SECTION_ID)
WHERE e.WF_PARENT_ELEMENT_ID IS NULL;

-- Open baskets of logged-in buyers (b_sale_fuser with a USER_ID): one cart per basket owner, updated at the
-- last change of a row; items put aside (DELAY) or not buyable are left out. Anonymous baskets have no
-- address: not mailable.
CREATE OR REPLACE VIEW carts AS
SELECT f.ID AS id, f.USER_ID AS customer_id,
  IF(MAX(b.DATE_UPDATE) < '1000-01-01', MAX(b.DATE_UPDATE), MAX(b.DATE_UPDATE) - INTERVAL shopmail_offset() MINUTE) AS updated_at
FROM b_sale_basket b
JOIN b_sale_fuser f ON f.ID = b.FUSER_ID
WHERE b.ORDER_ID IS NULL AND b.DELAY = 'N' AND b.CAN_BUY = 'Y' AND f.USER_ID > 0
  AND (b.SET_PARENT_ID IS NULL OR b.SET_PARENT_ID = b.ID)
  AND (shopmail_cfg('site_id') IS NULL OR b.LID = shopmail_cfg('site_id'))
GROUP BY f.ID, f.USER_ID;

CREATE OR REPLACE VIEW cart_items AS
SELECT b.FUSER_ID AS cart_id, b.PRODUCT_ID AS product_id, CAST(CEIL(SUM(b.QUANTITY)) AS SIGNED) AS qty
FROM b_sale_basket b
JOIN b_sale_fuser f ON f.ID = b.FUSER_ID
WHERE b.ORDER_ID IS NULL AND b.DELAY = 'N' AND b.CAN_BUY = 'Y' AND f.USER_ID > 0
  AND (b.SET_PARENT_ID IS NULL OR b.SET_PARENT_ID = b.ID)
  AND (shopmail_cfg('site_id') IS NULL OR b.LID = shopmail_cfg('site_id'))
GROUP BY b.FUSER_ID, b.PRODUCT_ID
HAVING SUM(b.QUANTITY) > 0;

-- Bitrix sends its own password-recovery mail (CHECKWORD): nothing for Shopmail to mail from.
CREATE OR REPLACE VIEW password_resets AS
SELECT
  CAST(0 AS SIGNED) AS id,
  CAST(0 AS SIGNED) AS customer_id,
  CAST(NULL AS DATETIME) AS requested_at,
  CAST('' AS CHAR(1000)) AS reset_url,
  CAST(NULL AS DATETIME) AS expires_at
FROM DUAL WHERE 1 = 0;

-- What the kit could not map, for `shopmail check-shop`: order statuses without a config row (their
-- orders are set aside by the data checks), with their Bitrix name, the number of orders and the row to add.
CREATE OR REPLACE VIEW shopmail_kit_unmapped AS
SELECT
  CONVERT('status' USING utf8mb4) AS what,
  CONVERT(CONCAT('bitrix-', o.STATUS_ID) USING utf8mb4) AS value,
  CONVERT(COALESCE((SELECT sl.NAME FROM b_sale_status_lang sl
                    WHERE sl.STATUS_ID = shopmail_text(o.STATUS_ID) AND sl.LID = shopmail_cfg('language_id') LIMIT 1), '')
          USING utf8mb4) AS label,
  COUNT(*) AS `rows`,
  CONVERT(CONCAT('INSERT INTO shopmail_kit_config (name, value) VALUES (''status_', o.STATUS_ID,
    ''', ''<received|paid|accepted|shipped|delivered|cancelled, or empty for none>'')') USING utf8mb4) AS fix
FROM shopmail_bx_orders o
WHERE o.CANCELED <> 'Y' AND shopmail_bx_mapped(o.STATUS_ID) = 0
GROUP BY o.STATUS_ID;
