-- +goose Up
-- seatmap_check raises an error with SQLSTATE code (and detail) unless ok:
-- the sale transaction's checks (the checkout's state, the fan's seat
-- limit, the seats' versions) run inside its one pipelined batch, and
-- the first that fails rolls the whole batch back (issue 7: one round
-- trip per sale instead of four). booking's sqlstate* constants name the
-- codes.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION seatmap_check(ok boolean, code text, detail text DEFAULT '') RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF ok IS NOT TRUE THEN
		RAISE EXCEPTION 'seatmap check % failed', code USING ERRCODE = code, DETAIL = detail;
	END IF;
	RETURN true;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS seatmap_check(boolean, text, text);
