-- Shopmail coupon bridge for WooCommerce: set SHOPMAIL_COUPON_TABLE=shopmail_coupon_outbox (a WooCommerce
-- coupon code has no length limit below the outbox's 40 characters: no SHOPMAIL_COUPON_CODE_MAX_LENGTH).
-- Install after views.sql. Shopmail inserts each issued coupon into shopmail_coupon_outbox (missing codes
-- only); this trigger creates the WooCommerce coupon in the same statement: a `shop_coupon` post (title =
-- code, excerpt = description) with the post meta WooCommerce's coupon data store reads: percent or fixed
-- cart discount, single use (usage_limit 1, usage_limit_per_user 1), restricted to the customer's e-mail
-- (customer_email, a PHP-serialized array, as WooCommerce writes it), expiring at Shopmail's expiry
-- instant (date_expires, a Unix timestamp). Fixed amounts are in the store currency.

-- String literals take the connection's collation: make it the kit's (see views.sql, "Collations").
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_520_ci;

CREATE TABLE IF NOT EXISTS shopmail_coupon_outbox (
  code VARCHAR(40) NOT NULL,
  customer_id INT NOT NULL,
  value DECIMAL(12,2) NOT NULL,
  percent TINYINT(1) NOT NULL DEFAULT 0,
  expires_at DATETIME NOT NULL,
  note TEXT NULL,
  campaign VARCHAR(64) NOT NULL,
  message_key VARCHAR(255) NOT NULL,
  created_at DATETIME NOT NULL,
  PRIMARY KEY (code),
  KEY customer_id (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;

DROP TRIGGER IF EXISTS shopmail_coupon_to_woocommerce;

DELIMITER $$
-- Idempotent: an existing (not trashed) shop_coupon with the code is left alone. Times: Shopmail's are
-- naive UTC; post_date is WordPress local time (utc_offset_minutes), date_expires a Unix timestamp computed
-- without the session time zone (TIMESTAMPDIFF from the epoch, not UNIX_TIMESTAMP).
CREATE TRIGGER shopmail_coupon_to_woocommerce AFTER INSERT ON shopmail_coupon_outbox
FOR EACH ROW
BEGIN
  DECLARE coupon_id BIGINT UNSIGNED;
  DECLARE email VARCHAR(320) CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci;
  DECLARE emails TEXT CHARSET utf8mb4 COLLATE utf8mb4_unicode_520_ci DEFAULT 'a:0:{}';
  IF NOT EXISTS (SELECT 1 FROM wp_posts WHERE post_type = 'shop_coupon' AND post_title = NEW.code COLLATE utf8mb4_bin
                 AND post_status <> 'trash') THEN
    IF NEW.customer_id > 0 THEN
      SET email = (SELECT LOWER(TRIM(user_email)) FROM wp_users WHERE ID = NEW.customer_id);
    ELSE
      SET email = (SELECT LOWER(TRIM(billing_email)) FROM wp_wc_orders WHERE id = -NEW.customer_id);
    END IF;
    IF email IS NOT NULL AND email <> '' THEN
      SET emails = CONCAT('a:1:{i:0;s:', OCTET_LENGTH(email), ':"', email, '";}');
    END IF;
    INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt,
                          post_status, comment_status, ping_status, post_name, to_ping, pinged,
                          post_modified, post_modified_gmt, post_content_filtered, post_type)
    VALUES (0, shopmail_local(NEW.created_at), NEW.created_at, '', NEW.code,
            LEFT(CONCAT('Shopmail ', NEW.campaign, ': ', COALESCE(NEW.note, '')), 1000),
            'publish', 'closed', 'closed', LOWER(NEW.code), '', '',
            shopmail_local(NEW.created_at), NEW.created_at, '', 'shop_coupon');
    SET coupon_id = LAST_INSERT_ID();
    UPDATE wp_posts SET guid = CONCAT(shopmail_cfg('store_url'), '?post_type=shop_coupon&p=', coupon_id)
    WHERE ID = coupon_id;
    INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES
      (coupon_id, 'discount_type', IF(NEW.percent, 'percent', 'fixed_cart')),
      (coupon_id, 'coupon_amount', TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM CAST(NEW.value AS CHAR)))),
      (coupon_id, 'individual_use', 'no'),
      (coupon_id, 'product_ids', ''),
      (coupon_id, 'exclude_product_ids', ''),
      (coupon_id, 'usage_limit', '1'),
      (coupon_id, 'usage_limit_per_user', '1'),
      (coupon_id, 'limit_usage_to_x_items', '0'),
      (coupon_id, 'usage_count', '0'),
      (coupon_id, 'date_expires', CAST(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', NEW.expires_at) AS CHAR)),
      (coupon_id, 'free_shipping', 'no'),
      (coupon_id, 'product_categories', 'a:0:{}'),
      (coupon_id, 'exclude_product_categories', 'a:0:{}'),
      (coupon_id, 'exclude_sale_items', 'no'),
      (coupon_id, 'minimum_amount', ''),
      (coupon_id, 'maximum_amount', ''),
      (coupon_id, 'customer_email', emails);
  END IF;
END$$
DELIMITER ;

-- The contract's coupons: Shopmail's issued coupons, `used` once WooCommerce counted a use (usage_count,
-- raised when an order with the coupon is placed).
CREATE OR REPLACE VIEW coupons AS
SELECT
  x.code,
  x.customer_id,
  CONVERT('coupon' USING utf8mb4) AS kind,
  x.value,
  x.percent,
  x.expires_at,
  EXISTS (SELECT 1 FROM wp_posts c JOIN wp_postmeta m ON m.post_id = c.ID AND m.meta_key = 'usage_count'
          WHERE c.post_type = 'shop_coupon' AND c.post_title = x.code COLLATE utf8mb4_bin AND c.post_status <> 'trash'
            AND CAST(m.meta_value AS UNSIGNED) > 0) AS used,
  x.note
FROM shopmail_coupon_outbox x;
