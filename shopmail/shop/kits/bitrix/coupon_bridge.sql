-- Shopmail coupon bridge for 1C-Bitrix (sale module): set SHOPMAIL_COUPON_TABLE=shopmail_coupon_outbox and
-- SHOPMAIL_COUPON_CODE_MAX_LENGTH=32 (b_sale_discount_coupon.COUPON is VARCHAR(32)). Install after views.sql.
-- A Bitrix coupon belongs to a cart rule (b_sale_discount, "Правила работы с корзиной") that says what it
-- gives; the rule's conditions and actions are compiled PHP, which SQL must not write. So the shop creates
-- one cart rule with coupons per coupon value its campaigns issue (e.g. 15 % for the birthday mail) and names
-- it in the kit config: discount_P_15 = <the rule's ID> (P: percent, F: fixed amount).
-- Shopmail inserts each issued coupon into shopmail_coupon_outbox (missing codes only); this trigger creates
-- the Bitrix coupon in the same statement: a one-order coupon (TYPE 2, MAX_USE 1) bound to the customer
-- (USER_ID: Bitrix accepts it from that user only), active from the issue through the expiry (site local
-- time). Without a configured rule for the value the insert fails with the reason, so no mail promises a
-- coupon that does not exist; `shopmail check-shop` asks the same question (shopmail_coupon_problem) first.

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

DROP TRIGGER IF EXISTS shopmail_coupon_to_bitrix;

DELIMITER $$
CREATE TRIGGER shopmail_coupon_to_bitrix AFTER INSERT ON shopmail_coupon_outbox
FOR EACH ROW
BEGIN
  DECLARE problem VARCHAR(400) CHARSET utf8mb4 COLLATE utf8mb4_unicode_ci
    DEFAULT shopmail_coupon_problem(NEW.value, NEW.percent);
  IF problem IS NOT NULL THEN
    SET problem = CONCAT('Shopmail Bitrix kit: ', problem);
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = problem;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM b_sale_discount_coupon WHERE COUPON = NEW.code COLLATE utf8mb4_bin) THEN
    INSERT INTO b_sale_discount_coupon (DISCOUNT_ID, ACTIVE, ACTIVE_FROM, ACTIVE_TO, COUPON, TYPE, MAX_USE,
                                        USE_COUNT, USER_ID, TIMESTAMP_X, DATE_CREATE, DESCRIPTION)
    VALUES (shopmail_coupon_discount(NEW.value, NEW.percent), 'Y', shopmail_local(NEW.created_at),
            shopmail_local(NEW.expires_at), NEW.code, 2, 1, 0, GREATEST(NEW.customer_id, 0),
            shopmail_local(NEW.created_at), shopmail_local(NEW.created_at),
            CONCAT('Shopmail ', NEW.campaign, ': ', COALESCE(NEW.note, '')));
  END IF;
END$$
DELIMITER ;

-- The contract's coupons: Shopmail's issued coupons, `used` once Bitrix recorded a use (the coupon in an
-- order's b_sale_order_coupons, or its USE_COUNT / DATE_APPLY set when an order applied it).
CREATE OR REPLACE VIEW coupons AS
SELECT
  x.code,
  x.customer_id,
  CONVERT('coupon' USING utf8mb4) AS kind,
  x.value,
  x.percent,
  x.expires_at,
  (EXISTS (SELECT 1 FROM b_sale_order_coupons oc WHERE oc.COUPON = x.code COLLATE utf8mb4_bin)
   OR EXISTS (SELECT 1 FROM b_sale_discount_coupon c WHERE c.COUPON = x.code COLLATE utf8mb4_bin
              AND (c.USE_COUNT > 0 OR c.DATE_APPLY IS NOT NULL))) AS used,
  x.note
FROM shopmail_coupon_outbox x;
