-- Shopmail coupon bridge for OpenCart 3.0.x: set SHOPMAIL_COUPON_TABLE=shopmail_coupon_outbox and
-- SHOPMAIL_COUPON_CODE_MAX_LENGTH=20 (oc_coupon.code is VARCHAR(20)). Install after views.sql.
-- Shopmail inserts each issued coupon into shopmail_coupon_outbox (missing codes only); this trigger
-- creates the OpenCart coupon in the same statement: single use (uses_total 1, uses_customer 1),
-- login required for registered customers (OpenCart 3 cannot bind a coupon to one customer: the
-- unguessable code is the binding), valid from the issue day through the local expiry day.
-- Fixed amounts are in the store's default currency.

-- String literals take the connection's collation: make it the kit's (see views.sql, "Collations").
SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;

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
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

DROP TRIGGER IF EXISTS shopmail_coupon_to_opencart;

DELIMITER $$
-- OpenCart's check: date_start < NOW() AND date_end > NOW() (dates, local time), so date_end is the day
-- after the local expiry day. Idempotent: an existing oc_coupon with the code is left alone.
CREATE TRIGGER shopmail_coupon_to_opencart AFTER INSERT ON shopmail_coupon_outbox
FOR EACH ROW
BEGIN
  IF NOT EXISTS (SELECT 1 FROM oc_coupon WHERE code = NEW.code COLLATE utf8mb4_bin) THEN
    INSERT INTO oc_coupon (name, code, type, discount, logged, shipping, total, date_start, date_end,
                           uses_total, uses_customer, status, date_added)
    VALUES (LEFT(CONCAT('Shopmail ', NEW.campaign, ': ', COALESCE(NEW.note, '')), 128), NEW.code,
            IF(NEW.percent, 'P', 'F'), NEW.value, IF(NEW.customer_id > 0, 1, 0), 0, 0,
            DATE(shopmail_local(NEW.created_at)), DATE(shopmail_local(NEW.expires_at)) + INTERVAL 1 DAY,
            1, 1, 1, shopmail_local(NEW.created_at));
  END IF;
END$$
DELIMITER ;

-- The contract's coupons: Shopmail's issued coupons, `used` once OpenCart recorded a use
-- (oc_coupon_history, written when an order with the coupon is placed).
CREATE OR REPLACE VIEW coupons AS
SELECT
  x.code,
  x.customer_id,
  CONVERT('coupon' USING utf8mb4) AS kind,
  x.value,
  x.percent,
  x.expires_at,
  EXISTS (SELECT 1 FROM oc_coupon_history ch JOIN oc_coupon cp ON cp.coupon_id = ch.coupon_id
          WHERE cp.code = x.code COLLATE utf8mb4_bin) AS used,
  x.note
FROM shopmail_coupon_outbox x;
