import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsBoolean, IsInt, IsNotEmpty, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import type { ModelUsage } from './model-gateway-tokens.service';
import { Run } from './run.entity';
import { RUN_STATUSES, type RunStatus } from './run-state';

const TOOL_PATTERN = /^[A-Za-z0-9_*:()./ -]{1,200}$/;

export class CreateRunDto {
  @ApiProperty({ description: 'The prompt for Claude (max length configured by RUN_MAX_PROMPT_CHARS)' })
  @IsString() @IsNotEmpty()
  prompt: string;

  @ApiPropertyOptional({ default: true, description: 'Continue the conversation of the last run on this volume' })
  @IsOptional() @IsBoolean()
  resume?: boolean;

  @ApiPropertyOptional({ example: 'claude-sonnet-4-5' })
  @IsOptional() @IsString() @Matches(/^[A-Za-z0-9._:@/-]{1,100}$/, { message: 'model must be a model name' })
  model?: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 500 })
  @IsOptional() @IsInt() @Min(1) @Max(500)
  max_turns?: number;

  @ApiPropertyOptional({ type: [String], example: ['Read', 'Bash(git:*)'] })
  @IsOptional() @IsArray() @ArrayMaxSize(100) @IsString({ each: true }) @Matches(TOOL_PATTERN, { each: true, message: 'allowed_tools entries must be tool names or patterns' })
  allowed_tools?: string[];

  @ApiPropertyOptional({ type: [String] })
  @IsOptional() @IsArray() @ArrayMaxSize(100) @IsString({ each: true }) @Matches(TOOL_PATTERN, { each: true, message: 'disallowed_tools entries must be tool names or patterns' })
  disallowed_tools?: string[];

  @ApiPropertyOptional()
  @IsOptional() @IsString() @MaxLength(20_000)
  append_system_prompt?: string;

  @ApiPropertyOptional({ default: false, description: 'Stream partial assistant text (stream_event)' })
  @IsOptional() @IsBoolean()
  include_partial_messages?: boolean;

  @ApiPropertyOptional({ minimum: 5, description: 'Kill the run after this many seconds (default RUN_DEFAULT_TIMEOUT_SECONDS)' })
  @IsOptional() @IsInt() @Min(5) @Max(86_400)
  timeout_seconds?: number;
}

export class RunCreatedResponse {
  @ApiProperty({ format: 'uuid' }) run_id: string;
  @ApiProperty({ enum: RUN_STATUSES }) status: RunStatus;
}

/** What the model gateway counted for a run, as it passed the model's responses through. */
export class ModelUsageResponse implements ModelUsage {
  @ApiProperty({ example: 3, description: 'Messages API requests the run made through the model gateway' }) requests: number;
  @ApiProperty({ example: 5210 }) input_tokens: number;
  @ApiProperty({ example: 842 }) output_tokens: number;
  @ApiProperty({ example: 1200 }) cache_creation_input_tokens: number;
  @ApiProperty({ example: 30400 }) cache_read_input_tokens: number;
}

export class RunResponse {
  @ApiProperty({ format: 'uuid' }) run_id: string;
  @ApiProperty({ format: 'uuid' }) sandbox_id: string;
  @ApiProperty() prompt: string;
  @ApiProperty({ type: 'object', additionalProperties: true }) options: Record<string, unknown>;
  @ApiProperty({ enum: RUN_STATUSES }) status: RunStatus;
  @ApiProperty({ nullable: true, type: String }) session_id: string | null;
  @ApiProperty({ nullable: true, type: Number }) exit_code: number | null;
  @ApiProperty({ nullable: true, type: String }) result: string | null;
  @ApiProperty({ nullable: true, type: Number }) total_cost_usd: number | null;
  @ApiProperty({ nullable: true, type: 'object', additionalProperties: true }) usage: Record<string, unknown> | null;
  @ApiProperty({ nullable: true, type: Number }) num_turns: number | null;
  @ApiProperty({
    nullable: true,
    type: ModelUsageResponse,
    description: 'Token usage recorded by the model gateway while the run was active (live while it runs); null when the run did not go through the gateway',
  })
  model_usage: ModelUsageResponse | null;
  @ApiProperty({ nullable: true, type: String }) error: string | null;
  @ApiProperty() created_at: string;
  @ApiProperty({ nullable: true, type: String }) started_at: string | null;
  @ApiProperty({ nullable: true, type: String }) finished_at: string | null;

  static from(run: Run, modelUsage: ModelUsage | null = null): RunResponse {
    return {
      run_id: run.id,
      sandbox_id: run.sandboxId,
      prompt: run.prompt,
      options: run.options as unknown as Record<string, unknown>,
      status: run.status,
      session_id: run.sessionId,
      exit_code: run.exitCode,
      result: run.result,
      total_cost_usd: run.totalCostUsd,
      usage: run.usage,
      num_turns: run.numTurns,
      model_usage: modelUsage,
      error: run.error,
      created_at: run.createdAt.toISOString(),
      started_at: run.startedAt?.toISOString() ?? null,
      finished_at: run.finishedAt?.toISOString() ?? null,
    };
  }
}
